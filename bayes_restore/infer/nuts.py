"""Pyro's No-U-Turn sampler for any model with a latent image site: the NUTS path of ``mcmc``."""

from __future__ import annotations

import time
from collections.abc import Callable

import pyro.poutine as poutine
import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_value
from pyro.infer.mcmc.util import initialize_model
from pyro.poutine.util import site_is_subsample

from bayes_restore.models import X_SITE
from bayes_restore.posterior import MCMCDiagnostics, Posterior, sampler_info

from .draws import DrawStore
from .generic import data_device, draw_seed, initial_trace, make_generator, seeded_global_rng

__all__ = ["run_nuts", "MAX_TREE_DEPTH"]

#: deepest NUTS tree (up to ``2^depth - 1`` gradients per draw); Pyro's default is 10
MAX_TREE_DEPTH = 15


def run_nuts(model, args, kwargs, *, num_samples, warmup, num_chains, thin, generator, seed,
             max_memory, progress, target_accept, max_tree_depth) -> Posterior:
    """Pyro's NUTS on ``model``: the ``sampler="nuts"`` path of :func:`~bayes_restore.infer.mcmc`.

    The chains run one after the other, each started at the model's initial trace
    (``init_to_value``) and seeded from the run's generator; Pyro draws from the global RNG,
    which is seeded for the run and restored afterwards. The arguments are ``mcmc``'s
    (checked there).
    """
    start = time.perf_counter()
    gen = make_generator(seed, generator, data_device(args, kwargs))
    trace = initial_trace(model, args, kwargs, generator=gen)
    x0 = trace.nodes[X_SITE]["value"].detach()
    device, dtype = x0.device, x0.dtype
    latent = {
        name: site["value"].detach()
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    }
    plates = max((len(site["cond_indep_stack"]) for site in trace.nodes.values()
                  if site["type"] == "sample"), default=0)
    if warmup is None:
        warmup = num_samples
    shape = tuple(x0.shape)
    # Pyro keeps every draw of a chain (num_samples * thin), and the chains' thinned draws
    # are stacked before the store sees them: both are in memory at the end of a run
    held = sum(v.numel() * v.element_size() for v in latent.values())
    need = num_samples * (thin + num_chains) * held
    if need > max_memory:
        raise ValueError(
            f"NUTS keeps every draw: num_samples={num_samples} with thin={thin} and "
            f"num_chains={num_chains} needs {need} bytes for the latent sites, beyond "
            f"max_memory={max_memory}; lower num_samples or thin, or raise max_memory"
        )
    store = DrawStore(num_chains, num_samples, shape, device, max_memory)
    per_chain: list[torch.Tensor] = []
    others: dict[str, list[torch.Tensor]] = {n: [] for n in latent if n != X_SITE}
    step_sizes, accept, divergences, evaluations = [], [], 0, 0
    for _ in range(num_chains):
        with seeded_global_rng(draw_seed(gen), device):  # Pyro draws from the global RNG
            init_params, potential_fn, transforms, _ = initialize_model(
                model, model_args=args, model_kwargs=kwargs,
                init_strategy=init_to_value(values=latent), max_plate_nesting=plates,
            )
            counter = _Counted(potential_fn)
            kernel = NUTS(potential_fn=counter, target_accept_prob=target_accept,
                          max_tree_depth=max_tree_depth, full_mass=False)
            runner = MCMC(kernel, num_samples=num_samples * thin, warmup_steps=warmup,
                          num_chains=1, initial_params=init_params, transforms=transforms,
                          disable_progbar=not progress)
            with poutine.block():
                runner.run()
        samples = runner.get_samples()
        xs = samples[X_SITE][thin - 1 :: thin].to(dtype)
        per_chain.append(xs)
        for name in others:
            others[name].append(samples[name][thin - 1 :: thin])
        # Pyro's diagnostics() also computes R-hat, which needs 4 draws: read its per-chain
        # acceptance rate and divergences directly (the same numbers) for shorter runs
        diag = runner.diagnostics() if num_samples * thin >= 4 else {
            name: {"chain 0": value} for name, value in runner._diagnostics[0].items()  # noqa: SLF001
        }
        step_sizes.append(float(kernel.step_size))
        rate = diag.get("acceptance rate", {})
        accept.extend(float(v) for v in rate.values())
        divergences += sum(len(v) for v in diag.get("divergences", {}).values())
        evaluations += counter.calls
    draws = torch.stack(per_chain)  # (chain, draw, *shape)
    for i in range(num_samples):
        store.add(draws[:, i])
    mean, std = store.moments(num_chains, dtype)
    latents = {
        name: {"mean": torch.cat(v).mean(0), "std": torch.cat(v).std(0)}
        for name, v in others.items()
    }
    info = {
        "sampler": "nuts",
        "step_size": step_sizes,
        "acceptance_rate": accept,
        "divergences": divergences,
        "num_chains": num_chains,
        "warmup": warmup,
        "thin": thin,
        "max_plate_nesting": plates,
        "gradient_evaluations": evaluations,
        "prox_evaluations": 0,
        "lambda_MY": None,
        "num_draws": num_samples,
        "num_draws_kept": store.kept,
        "storage_thin": store.every,
        "latents": latents,
        "wall_time": time.perf_counter() - start,
    }
    total = (warmup + num_samples * thin) * num_chains
    return Posterior(method="mcmc", mean=mean, std=std, samples=store.samples, map=None,
                     info=sampler_info("nuts", total, info["wall_time"]),
                     diagnostics=MCMCDiagnostics(**info))


class _Counted:
    """Wraps a potential function and counts its calls (one per gradient evaluation)."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, params: dict) -> torch.Tensor:
        self.calls += 1
        return self.fn(params)
