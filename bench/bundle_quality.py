"""Held-out quality of exported bundles through the runtime, side by side (e.g. two ways to make int8 graphs).

    python bench/bundle_quality.py BUNDLE [BUNDLE ...] --photos photos/heldout [--crops 1] [--crop 256]
        [--syntheses v2,albumentations] [--rule max_steps=3,min_better=0,min_detect=0,target_quality=40] [--json F]
        [--samples samples] [--no-denoise]

Every held-out photo gives ``--crops`` random crops, each degraded under every evaluation case (bench/report.py's
test set: the same crops, cases and seeds). Each bundle restores them with its own loop defaults (the runtime's
``Restorer.restore``, no budget), or with the stop rule's fields that ``--rule`` overrides (the same for every
bundle: e.g. a fixed number of steps, to compare what the restore steps do apart from where a loop stops). Prints, per test synthesis, one row per bundle: mean PSNR gain over the input
on single degradations, on composites, their mean (the replacement rule's figure, as in
bench/learning_curve.py), per case, the mean steps, the share of degraded crops the loop made at least 1 dB
worse than their input and the worst such loss (a mean hides a few ruined photos), the share of clean crops
returned unchanged and the lowest PSNR among them (how far a changed one fell; 100 dB when every one came back
unchanged). With ``--samples DIR`` (a folder with samples.json, as ``samples/``: what ``make demo`` and a new user
restore first), also one row per bundle of each sample's PSNR gain and steps, and their mean (each bundle's own
rule, as make demo runs it: ``--rule`` does not apply to them). With ``--tone``, every bundle also runs with the
exposure stage first (``Restorer.restore(tone=True)``: the shipped head, or ``--tone-head``'s), as one more row.
The runtime's noise stage runs where noise is found, as for users; ``--no-denoise`` measures the loops alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from report import PSNR_CAP_DB, evaluate, test_set  # noqa: E402  (the same test set, means and cap)


#: The stop rule's fields ``--rule`` may override (Restorer.restore's keywords) and how each is read.
RULE_FIELDS = {"max_steps": int, "target_quality": float, "min_gain": float, "min_change": float, "keep": str,
               "min_better": float, "min_detect": float}


def parse_rule(text: str) -> dict:
    """``max_steps=3,min_detect=0`` -> {"max_steps": 3, "min_detect": 0.0}; ValueError names a bad field."""
    rule = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in RULE_FIELDS:
            raise ValueError(f"--rule {item!r}: use FIELD=VALUE with FIELD one of {', '.join(RULE_FIELDS)}")
        try:
            rule[key] = RULE_FIELDS[key](value)
        except ValueError:
            raise ValueError(f"--rule {item!r}: {value!r} is not a {RULE_FIELDS[key].__name__}") from None
    return rule


def add_test_set_args(p: argparse.ArgumentParser) -> None:
    """The test set's options (bench/report.py's crops, cases and seeds), ``--rule`` and ``--json``: the same
    for every script that restores the held-out crops through bundles."""
    p.add_argument("--photos", required=True, help="held-out photos")
    p.add_argument("--crops", type=int, default=1, help="crops per photo")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--syntheses", default="v2,albumentations", help="test syntheses, comma-separated")
    p.add_argument("--rule", default="", help="stop-rule fields for every bundle instead of its own, e.g. "
                   "max_steps=3,min_better=0,min_detect=0,target_quality=40 (3 steps on every image)")
    p.add_argument("--json")


def parsed_rule(p: argparse.ArgumentParser, a: argparse.Namespace) -> dict:
    """``--rule`` parsed (parse_rule); a bad field exits with the parser's one-line usage error."""
    try:
        return parse_rule(a.rule)
    except ValueError as e:
        p.error(str(e))


def bundle_methods(bundle: Path, rule: dict | None = None, tone: bool = False, tone_head: str | None = None) -> dict:
    """The runtime's Restorer on ``bundle`` as report methods (image -> (restored, steps run)), by label: the
    bundle's path, and with ``tone`` also "PATH --tone" (the exposure stage first: ``restore(tone=True)``);
    ``rule`` overrides the bundle's stop-rule fields; ``tone_head``: another head than the shipped one. The
    bundle is loaded once."""
    from rar_edge.runtime import Restorer

    r = Restorer.load(bundle, tone_head=tone_head)

    def method(with_tone: bool):
        def run(x: np.ndarray) -> tuple[np.ndarray, int]:
            res = r.restore(x, tone=with_tone, **(rule or {}))
            return res.image, res.steps_run
        return run

    return {str(bundle): method(False)} | ({f"{bundle} --tone": method(True)} if tone else {})


def summary(per_case: dict, inputs: dict) -> dict:
    """Gains over the input: per case, the singles' and composites' means, their mean; steps; the share of
    degraded crops harmed (bench/report.py's HARM_DB) and the lowest gain of any; clean kept and the lowest
    clean PSNR (capped as in bench/report.py, so an untouched set reads as the cap)."""
    gains = {c: per_case[c]["psnr"] - inputs[c]["psnr"] for c in per_case if c != "clean"}
    single = [g for c, g in gains.items() if "+" not in c]
    composite = [g for c, g in gains.items() if "+" in c]
    out = {"single": float(np.mean(single)), "composite": float(np.mean(composite))}
    out["mean"] = (out["single"] + out["composite"]) / 2
    out["cases"] = gains
    out["steps"] = float(np.mean([per_case[c]["steps"] for c in per_case]))
    out["harmed"] = float(np.mean([per_case[c]["harmed"] for c in gains]))  # every case has as many crops
    out["worst_gain"] = float(min(per_case[c]["gain_min"] for c in gains))
    if "clean" in per_case:
        out["clean_unchanged"] = per_case["clean"]["unchanged"]
        out["clean_psnr_min"] = per_case["clean"]["psnr_min"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundles", nargs="+", type=Path)
    add_test_set_args(p)
    p.add_argument("--tone", action="store_true", help="also each bundle with the exposure stage first "
                   "(restore --tone; row \"BUNDLE --tone\")")
    p.add_argument("--tone-head", help="with --tone: a `rar-edge train-tone` folder instead of the shipped head")
    p.add_argument("--samples", help="also restore this folder's samples (samples.json, degraded/, clean/), e.g. "
                   "samples, with each bundle's own rule as make demo does")
    p.add_argument("--no-denoise", action="store_true",
                   help="the loop alone: without the noise stage restore runs where noise is found")
    a = p.parse_args(argv)
    rule = parsed_rule(p, a) | ({"denoise": False} if a.no_denoise else {})
    if a.tone_head and not a.tone:
        p.error("--tone-head names the exposure stage's head: add --tone")
    if a.tone_head and a.samples:
        p.error("--samples restores as make demo does, with the shipped head: leave --tone-head out")
    missing = [str(b) for b in a.bundles if not (b / "manifest.json").is_file()]
    if missing:
        p.error(f"not a bundle (no manifest.json): {', '.join(missing)}")
    command = shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"`python bench/bundle_quality.py {command}` — {date.today()}, "
          f"{platform.processor() or platform.machine()}")
    results = {}
    methods = {"input": lambda x: (x, 0)}
    for b in a.bundles:
        methods |= bundle_methods(b, rule, a.tone, a.tone_head)
    for synthesis in a.syntheses.split(","):
        clean, degraded, names, index = test_set(a.photos, a.crops, a.crop, synthesis=synthesis)
        per = evaluate(methods, clean, degraded, names, index)
        cases = [c for c in dict.fromkeys(names) if c != "clean"]
        results[synthesis] = {m: summary(per[m], per["input"]) for m in methods if m != "input"}
        print(f"\n{synthesis}: {len(clean)} crops of {a.crop}² per case\n")
        print("| bundle | mean | single | composite | " + " | ".join(cases) + " | steps | harmed | worst dB | clean unchanged | worst clean dB |")
        print("|---" * (len(cases) + 9) + "|")
        for m, s in results[synthesis].items():
            print(f"| {Path(m).name} ({Path(m).parent.name}) | {s['mean']:+.2f} | {s['single']:+.2f} | "
                  f"{s['composite']:+.2f} | " + " | ".join(f"{s['cases'][c]:+.2f}" for c in cases)
                  + f" | {s['steps']:.2f} | {s['harmed']:.1%} | {s['worst_gain']:+.1f}"
                  + f" | {s.get('clean_unchanged', float('nan')):.0%}"
                  + f" | {s.get('clean_psnr_min', float('nan')):.1f} |")
    if a.samples:
        results["samples"] = samples_table(Path(a.samples), a.bundles, a.tone, denoise=not a.no_denoise)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


def samples_table(folder: Path, bundles: list[Path], tone: bool = False, denoise: bool = True) -> dict:
    """Each bundle on every sample of ``folder`` (as ``make demo`` restores them: rar_edge.demo.restore_samples,
    the bundle's own rule, no budget; with ``tone`` also "BUNDLE --tone", the shipped head first): per bundle,
    each sample's PSNR gain and steps run, and the mean gain; printed as a table."""
    import tempfile

    from rar_edge.demo import restore_samples

    results = {}
    for bundle, with_tone in ((b, t) for b in dict.fromkeys(bundles) for t in (False, True)[: 1 + tone]):
        with tempfile.TemporaryDirectory() as tmp:
            rows = restore_samples(bundle, folder, Path(tmp), None, tone=with_tone, denoise=denoise)
        # PSNR capped as in the held-out tables: a sample already equal to its original would be infinite
        gains = {r["name"]: {"gain": min(r["psnr_out"], PSNR_CAP_DB) - min(r["psnr_in"], PSNR_CAP_DB), "steps": r["steps_run"]}
                 for r in rows}
        label = f"{bundle} --tone" if with_tone else str(bundle)
        results[label] = {"images": gains, "mean": float(np.mean([g["gain"] for g in gains.values()]))}
    names = list(next(iter(results.values()))["images"])
    print(f"\n{folder.name}/: PSNR gain in dB (steps run) per image\n")
    print("| bundle | " + " | ".join(Path(n).stem for n in names) + " | mean |")
    print("|---" * (len(names) + 2) + "|")
    for m, r in results.items():
        print(f"| {Path(m).name} ({Path(m).parent.name}) | "
              + " | ".join(f"{r['images'][n]['gain']:+.2f} ({r['images'][n]['steps']})" for n in names)
              + f" | {r['mean']:+.2f} |")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
