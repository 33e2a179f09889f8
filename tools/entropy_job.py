# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check a job file (docs/jobs.md) before submitting it, optionally against a cluster's placement model.

  entropy_job.py check JOB.yml [--model MODEL.json]

Prints the validated job as JSON (its VM names, and with --model the room figures), or one line
naming the field and the fix, with exit code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "plugins", "plugin_utils"))

import jobs  # noqa: E402  pylint: disable=wrong-import-position


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="entropy_job.py", description=__doc__.split("\n\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a job file (and whether the cluster could ever hold it)")
    check.add_argument("job_file")
    check.add_argument("--model", help="a placement model (JSON, docs/model-format.md): refuse a job larger than that cluster")
    args = parser.parse_args(argv)
    try:
        job = jobs.load_job_file(args.job_file)
        out = {"job": job.to_dict(), "vm_names": job.vm_names()}
        if args.model:
            try:
                with open(args.model, encoding="utf-8") as handle:
                    model = json.load(handle)
            except (OSError, ValueError) as exc:
                print("entropy_job: error: model %s cannot be read: %s" % (args.model, exc), file=sys.stderr)
                return 2
            out["room"] = jobs.check_room(job, model)
    except jobs.JobError as exc:
        print("entropy_job: error: %s" % exc, file=sys.stderr)
        return 2
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
