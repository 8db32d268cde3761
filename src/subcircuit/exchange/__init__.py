"""Exchange: circuits to and from the files the rest of the field uses (docs/exchange.md).

- `eap_ig`: EAP-IG's circuit JSON (`Graph.to_json` / `Graph.from_json` of hannamw/EAP-IG, the
  engine of MIB's circuit track): read into a `Circuit` with every edge name checked against our
  graph, and written from one, byte for byte as EAP-IG orders it;
- `mib`: MIB's circuit-track submission folder (per-edge importances, or the nine binary circuits
  at MIB's edge fractions);
- `tables`: our own CSV (every edge, exact scores) and Graphviz DOT (the circuit's edges).

Everything here is pure data conversion: a `Graph` (for the names) and a `Circuit` in, text out,
and back. Loading a model, when a command needs its config, is the caller's (the CLI's) job.
"""

from __future__ import annotations

FORMATS: tuple[str, ...] = ("eap-ig", "mib", "dot", "csv")
