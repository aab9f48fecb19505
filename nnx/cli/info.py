"""Show Python, NumPy, CuPy, CUDA and PyTorch versions, the GPUs and PyTorch devices seen, and
what ``--device auto`` picks.

Use it first when a device does not behave as expected.
"""

from __future__ import annotations

import argparse
import json

from backends import machine_info
from nnx.cli import nnx_version


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")


def run(args: argparse.Namespace) -> int:
    info = {"nnx": nnx_version(), **machine_info()}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key == "gpus":
            value = "; ".join(
                f"{g['device']} {g['name']} ({g['memory_gib']} GiB, sm {g['compute_capability']})"
                for g in value
            ) or "none"
        elif key == "gpu_setup":
            for f in value:
                fix = f" -> {f['fix']}" if f["fix"] else ""
                print(f"{'gpu setup':<{width}}  {'ok' if f['ok'] else 'PROBLEM'}: "
                      f"{f['finding']}{fix}")
            continue
        elif key == "torch_devices":
            value = "; ".join(" ".join([d["device"], *([f"{d['name']} ({d['memory_gib']} GiB)"]
                                                       if "name" in d else [])]) for d in value)
        print(f"{key:<{width}}  {'-' if value is None else value}")
    return 0
