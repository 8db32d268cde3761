"""Compile the tracr programs, convert them to our format and derive their ground-truth circuits.

For every program of `PROGRAMS` (see `subcircuit.models.tracr`):

1. compile the RASP program with tracr-pypi (the ACDC paper's settings: vocab {1,2,3} /
   {w,x,y,z}, max_seq_len 5, BOS "BOS", not causal);
2. convert the haiku parameters to our `Transformer` and check it against tracr's own model on
   every input of length 1..5 (residual stream after every layer, and the output);
3. write `src/subcircuit/data/models/<name>/` (config + safetensors, via `subcircuit.models.save`)
   and `src/subcircuit/data/reference/<name>.json` (the derived ground-truth circuit).

Needs the `tracr` extra (JAX). With `--check`, writes nothing and exits 1 when the shipped files
differ from a fresh build.

    python scripts/build_tracr_models.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from subcircuit.models import save
from subcircuit.models.tracr import (
    PROGRAMS,
    build,
    compare_with_tracr,
    compile_program,
    load_ground_truth,
    load_tracr,
    reference_path,
    shipped_dir,
)

TOL = 1e-5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped files; write nothing")
    ap.add_argument("names", nargs="*", help="programs to build (default: all)")
    args = ap.parse_args()
    ok = True
    for name in args.names or PROGRAMS:
        loaded, truth = build(name)
        assembled, sop = compile_program(name)
        cmp = compare_with_tracr(assembled, sop, loaded)
        print(f"{name}: {loaded.model.n_params()} parameters, cfg {loaded.cfg}")
        print(f"  vs tracr on {cmp['n_inputs']} inputs: residual max |diff| {cmp['residual_max_abs_diff']:.3g}, "
              f"output max |diff| {cmp['output_max_abs_diff']:.3g}, decoded equal {cmp['decoded_equal']}")
        print(f"  ground truth: nodes {truth['nodes']}, {len(truth['edges'])} edges")
        if cmp["residual_max_abs_diff"] > TOL or cmp["output_max_abs_diff"] > TOL or not cmp["decoded_equal"]:
            print("  CONVERSION DIFFERS FROM TRACR", file=sys.stderr)
            ok = False
        meta = {**loaded.meta, "check_vs_tracr": cmp}
        if args.check:
            shipped = load_tracr(name)
            fresh = loaded.model.state_dict()
            same = shipped.cfg == loaded.cfg and all(
                torch.equal(v, fresh[k]) for k, v in shipped.model.state_dict().items()
            )
            same_truth = load_ground_truth(name) == json.loads(json.dumps(truth))
            print(f"  shipped weights equal: {same}; shipped ground truth equal: {same_truth}")
            ok &= same and same_truth
        else:
            save(loaded.model, shipped_dir(name), meta)
            path = reference_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(truth, indent=2) + "\n")
            print(f"  wrote {shipped_dir(name)} and {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
