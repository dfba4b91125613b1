"""The position-bias sweep: the target forced to each configured position of the candidate list,
the list ranked again, and where the target lands (HR@1, mean rank). Rankers whose type has
``bootstrap_params`` are swept twice: as configured (``plain``) and with permutation
bootstrapping switched on (``bootstrap``).
"""

from __future__ import annotations

from typing import Any

from ..types import item_id_of
from . import protocol as P
from .experiment import build_ranker, ranker_fingerprint
from .ranking_run import rank_users
from .records import BiasSweep, SeedResult
from .run_context import SeedContext

__all__ = ["bias_sweep"]


def bias_sweep(ctx: SeedContext, result: SeedResult) -> BiasSweep:
    """Sweep the first ``position_bias.users`` users; fills ``result.position_bias`` ranker by
    ranker (writing the partial results after each)."""
    run = ctx.run
    pb = ctx.protocol.position_bias
    bias_users = ctx.users[: pb.users]
    if ctx.protocol.regime == "a":  # the stage-1 list, target inserted when missing
        base = {u: [item_id_of(c) for c in ctx.lists[u]] for u in bias_users}
    else:
        base = {u: list(ctx.lists[u]) for u in bias_users}
    specs = [s for s in run.config.rankers if (pb.rankers is None or s.name in pb.rankers)]
    sweep = BiasSweep(positions=pb.positions, users=len(bias_users))
    result.position_bias = sweep
    for spec in specs:
        variants = [("plain", spec)]
        if spec.type in pb.bootstrap_params:
            params = {**spec.params, **pb.bootstrap_params[spec.type]}
            # validated anew, so bad bootstrap params fail like a row's own
            variants.append(("bootstrap", type(spec).model_validate({**spec.model_dump(), "params": params})))
        res: dict[str, Any] = {}
        for vname, vspec in variants:
            ranker = ctx.build.built[spec.name] if vname == "plain" else build_ranker(vspec, ctx.build)
            fpr = ranker_fingerprint(vspec, ctx.fingerprint, ctx.seed)
            cells = {}
            for pos in pb.positions:
                plist = {u: P.place_target(base[u], ctx.targets[u], pos) for u in bias_users}
                r = rank_users(
                    ranker, f"{spec.name}/{vname}@{pos}", fpr, bias_users, ctx.histories, plist,
                    run.cache, salt=f"bias{pos}", progress=run.options.progress,
                    flush_every=10**9,
                )
                cells[str(pos)] = P.bias_metrics(r.ranked, [ctx.targets[u] for u in bias_users])
            res[vname] = cells
        sweep.rankers[spec.name] = {"type": spec.type, **res}
        run.flush()
    return sweep
