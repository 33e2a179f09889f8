"""Put plugins/plugin_utils on sys.path so the tests import the package standalone as `jobs`."""
from __future__ import annotations

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), *([os.pardir] * 5)))
sys.path.insert(0, os.path.join(ROOT, "plugins", "plugin_utils"))
