# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jobs for entropy.cluster: the job file schema (a group of VMs that runs a user's command).

Pure Python, no Ansible import; importable as a collection plugin_utils package or standalone
(`import jobs` with plugins/plugin_utils on sys.path). PyYAML is needed only by load_job_file.
"""
from __future__ import annotations

from .admission import check_room
from .placing import job_plan, place_job, real_model, waiting_model
from .schema import JOB_FIELDS, Job, JobConstraint, JobError, load_job_file, parse_job

__all__ = ["Job", "JobConstraint", "JobError", "JOB_FIELDS", "parse_job", "load_job_file", "check_room", "place_job", "waiting_model", "job_plan", "real_model"]
