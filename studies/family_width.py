"""Width sweeps of real architectures: ``study bert-width`` and ``study gpt2-width``.

Each is the coordinate check of a built-in model family (``studies.families``) through the
factory path (``studies.factory_check``): at every hidden size n (2 layers, heads n/64,
intermediate 4n) and seed, the family pretrains its base briefly on a synthetic task with
Adam's width rule, then LoRA (rank 4, Init[1]) fine-tunes under each scheme with Adam at
eta_A = 1e-3 (n/64)^gA and eta_B = 1e-3 (n/64)^gB on one fixed batch; ``scaling.monitor``
measures every LoRA layer every step, and the deltas are fitted against n and judged as in
``validate``. The LoRA layers of the first block read the base's own (LayerNorm'd) features and
have a sharp prediction under every scheme; the later ones only under stable schemes.

bert-width keeps the settings it had when it was a hard-wired loop (3 seeds), so its verdicts
can be compared with that version's; ``coord-check --factory bert --seeds 4`` runs more seeds.
"""
from __future__ import annotations

from dataclasses import dataclass

from studies.factory_check import FactoryCheckSpec, run_study


@dataclass(frozen=True)
class FamilyStudy:
    family: str
    title: str
    figure: str
    seeds: int
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    schemes: tuple[str, ...] = ("lora-const", "loraplus")

    def spec(self, quick: bool = False) -> FactoryCheckSpec:
        widths, seeds = ((64, 128, 256), 2) if quick else (self.widths, self.seeds)
        return FactoryCheckSpec(factory=self.family, widths=widths, seeds=tuple(range(seeds)), schemes=self.schemes,
                                steps=6, rank=4, lr_a=1e-3, lr_b=1e-3, base_width=64)


STUDIES = {
    "bert-width": FamilyStudy("bert", "study bert-width: BERT-style encoders", "bert_width", seeds=3),
    "gpt2-width": FamilyStudy("gpt2", "study gpt2-width: GPT-2-style decoders", "gpt2_width", seeds=4),
}


def run(args) -> int:
    """``study bert-width | gpt2-width [--quick]``."""
    study = STUDIES[args.name]
    return run_study(study.spec(args.quick), args, f"runs/{args.name}", args.name, study.title, study.figure)


def render(out, results, meta) -> dict[str, str]:
    """Redraw a stored family study (the gallery)."""
    from studies.reports.factory_check import render as render_factory
    study = STUDIES.get(meta.get("study"))
    if study is None:
        return render_factory(out, results, meta)
    return render_factory(out, results, meta, figure=study.figure, title=study.title)
