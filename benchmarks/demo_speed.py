"""Wall and CPU seconds of ``ersm-eval demo``, run in a subprocess as a user would run it.

CPU seconds (user + system of the demo process and its children) tell what the demo
costs whatever else the machine is doing; wall seconds equal CPU seconds divided by
the cores it gets, so on a quiet 2-core machine expect about CPU / 2 (a little more,
since not every step uses both cores). The demo's own measurement, its test
accuracies and mean keep are read back from ``demo.json``.

    .venv/bin/python benchmarks/demo_speed.py                 # the full demo, 2 threads
    .venv/bin/python benchmarks/demo_speed.py --small         # ERSM_DEMO_SMALL=1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="run the small demo (ERSM_DEMO_SMALL=1)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (OMP_NUM_THREADS) of the demo")
    parser.add_argument("--out", type=Path, default=None, help="demo output folder (default: a temporary one)")
    args = parser.parse_args()

    exe = Path(sys.executable).with_name("ersm-eval")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if args.small:
        env["ERSM_DEMO_SMALL"] = "1"
    with tempfile.TemporaryDirectory(prefix="demo-speed-") as scratch:
        out = args.out or Path(scratch) / "demo"
        cpu0, t0 = _children_cpu(), time.perf_counter()
        subprocess.run([str(exe), "demo", "--out", str(out), "--overwrite", "--quiet"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
        record = json.loads((out / "demo.json").read_text())
    load = os.getloadavg()[0]
    print(f"demo ({record['settings']['size']}, {args.threads} threads): wall {wall:.0f} s, CPU {cpu:.0f} s "
          f"(load average {load:.1f} at the end; on a quiet 2-core machine expect wall ≈ CPU / 2)")
    for label, model in record["models"].items():
        extra = ""
        if "keep_mass_on_object" in model:
            loc = model["keep_mass_on_object"]
            extra = (f", mean keep {model.get('mean_keep', float('nan')):.3f}, keep mass on object {loc['value']:.3f}"
                     f" (excess {loc['excess']:+.3f}, 95% CI {loc['excess_ci_low']:+.3f} to {loc['excess_ci_high']:+.3f})")
        print(f"  {label}: test accuracy {100 * model['test_accuracy']:.1f}%, deletion verdicts "
              f"{model['deletion_verdicts']}{extra}")


if __name__ == "__main__":
    main()
