"""The per-step funnel table printed at the end of a run (and written to `out/FUNNEL.md`)."""

from __future__ import annotations

from collections.abc import Sequence

from herd.core.manifest import Manifest


def funnel_table(results: Sequence[tuple[str, Manifest]]) -> str:
    """One row per stage: docs in, kept, dropped (by reason), MB in/kept, docs/s."""
    head = f"{'stage':<12}{'in':>8}{'kept':>8}{'dropped':>9}{'MB in':>9}{'MB kept':>9}{'docs/s':>9}  dropped by reason"
    rows = [head, "-" * len(head)]
    for name, m in results:
        c = m.counts
        dropped = c.get("dropped", {})
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(dropped.items(), key=lambda kv: -kv[1]))
        rows.append(
            f"{name:<12}{c.get('in', 0):>8}{c.get('kept', 0):>8}{sum(dropped.values()):>9}"
            f"{c.get('in_bytes', 0) / 1e6:>9.2f}{c.get('kept_bytes', 0) / 1e6:>9.2f}"
            f"{c.get('docs_per_s', 0):>9.0f}  {reasons}"
        )
    notes = [
        f"  {name}: " + ", ".join(f"{k}={int(v)}" for k, v in m.counts["steps"].items() if not k.startswith("lang_"))
        for name, m in results
        if any(not k.startswith("lang_") for k in m.counts.get("steps", {}))
    ]
    return "\n".join(rows + (["side counters:", *notes] if notes else []))
