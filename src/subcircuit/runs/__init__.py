"""Runs: how a run is made and what its folder holds.

- `options`: `DiscoverOptions` (run-level fields, the method's own options, the selection of a
  score method's circuit) and `run_header`, what identifies a run in its checkpoint files;
- `pipeline`: a session (model, task, graph, problem: `open_session`) and the one pipeline every
  run goes through (`run_in_session`: method, selection, checks, faithfulness, circuit.json);
- `discover`: one run (`subcircuit discover`), resuming from a checkpoint (`options_from_trace`);
- `sweep`: one method over thresholds or sizes, every run in one session (`subcircuit sweep`);
- `memory`: the memory estimate made before loading a model;
- `report`: the report of a run folder (head roles, then circuit.svg and report.html);
- `demo`: the demo behind `subcircuit demo`.

The modules are imported by name (`from subcircuit.runs.discover import discover`): importing
this package imports nothing else.
"""
