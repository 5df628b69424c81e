"""Feature extraction and sampling speed, measured side by side in one run.

- Inception pool3 (the FID network of ASSETS.md, TF1 bilinear resize to 299), each backend side by side on the
  same images: torch fp32, torch bf16 autocast + channels_last, OpenVINO bf16 (``INFERENCE_PRECISION_HINT``,
  genbench's default on CPU where openvino is installed) and OpenVINO f32; images/s and the FID each gives
  (a random N test images vs a random N held-out images), so a fast setting is kept only if its FID stays within
  0.5% of torch fp32. Also what N images per row would cost (``--fid-n``, default 2,000): 5 rows x N plus the
  reference N, at each backend's measured rate.
- The DDPM U-Net's sampling forward (``--unet``): torch bf16 autocast (what sampling runs) vs OpenVINO bf16 on the
  same inputs (the guided batch: 2 x ``--ddpm-n`` images), alternating blocks, median.
- The in-domain MNIST classifier: images/s (features + softmax).
- Sampling: seconds per 1,000 images of each model kind, untrained weights (cost does not depend on the
  weights), and of the DDPM U-Net per sampler setting.

    .venv/bin/python benchmarks/metrics_throughput.py [--n 200] [--ddpm-n 100] [--fid-n 2000] [--unet]
        [--skip-sampling]
"""

from __future__ import annotations

import argparse
import time

import torch

from genbench.data import load_dataset
from genbench.metrics.classifier import predict
from genbench.metrics.inception import InceptionFeatures, _openvino
from genbench.metrics.reference import reference_subset
from genbench.metrics.scores import feature_stats, frechet_distance
from genbench.families import build_model
from genbench.models.classifier import Classifier
from genbench.sampling.bank import generate
from genbench.families import drawer, nfe
from genbench.studies.config import load_study


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="images per Inception measurement")
    ap.add_argument("--ddpm-n", type=int, default=100, help="images per DDPM sampler setting")
    ap.add_argument("--ancestral", action="store_true", help="also time 1,000-step ancestral DDPM sampling")
    ap.add_argument("--fid-n", type=int, default=2000, help="images per row to cost (5 rows + the reference)")
    ap.add_argument("--unet", action="store_true", help="time the U-Net forward in torch bf16 vs OpenVINO bf16")
    ap.add_argument("--skip-sampling", action="store_true", help="skip the per-model sampling timings")
    args = ap.parse_args()
    splits = load_dataset("mnist")
    test = splits["test"]
    n = args.n
    a = test.x[torch.as_tensor(reference_subset(test, n, 0))]
    b = splits["holdout"].x[torch.as_tensor(reference_subset(splits["holdout"], n, 0))]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    settings = [("torch", "fp32"), ("torch", "bf16")]
    if _openvino() is not None:
        settings += [("openvino", "bf16"), ("openvino", "fp32")]
    fids, rates = {}, {}
    for backend, prec in settings:
        inc = InceptionFeatures(precision=prec, backend=backend)
        inc(a[:8])  # warm-up
        t0 = time.perf_counter()
        fa = inc(a)
        dt = time.perf_counter() - t0
        fb = inc(b)
        name = f"{backend} {prec}"
        fids[name], rates[name] = frechet_distance(*feature_stats(fa), *feature_stats(fb)), n / dt
        print(f"inception {name:13}: {rates[name]:6.1f} images/s  FID(test random {n}, holdout random {n}) = "
              f"{fids[name]:.4f} ({100 * (fids[name] / fids['torch fp32'] - 1):+.3f}% vs torch fp32)", flush=True)
    images = 6 * args.fid_n
    for name, r in rates.items():
        print(f"N={args.fid_n} per row, 5 rows + reference = {images:,} images: {images / r:7.0f} s with {name} "
              f"({1000 / r:.1f} s per 1,000; {r / rates['torch bf16']:.2f}x torch bf16)")
    if args.unet:
        unet_openvino(args.ddpm_n)
    if args.skip_sampling:
        return
    clf = Classifier(channels=1, num_classes=10).eval()
    predict(clf, test.x[:100])
    t0 = time.perf_counter()
    predict(clf, test.x)
    print(f"classifier: {len(test) / (time.perf_counter() - t0):8.0f} images/s (10,000 test images)")

    study = load_study("mnist_four", "quick")
    for m in study.models:
        torch.manual_seed(0)
        model, _ = build_model(m.kind, m.params)
        model.eval()
        if m.kind != "ddpm":
            labels = torch.arange(1000) % 10 if m.kind in ("cgan", "flow") else None
            _, s = generate(model, 1000, seed=0, labels=labels, draw=drawer(m.sampling or None))
            print(f"sample {m.name:5}: {s:8.3f} s per 1,000 images ({nfe(model, m.sampling or None)} NFE)")
            continue
        settings = [("ddim", 10), ("ddim", 25), ("ddim", 50), ("dpm_solver", 10), ("dpm_solver", 20)]
        if args.ancestral:
            settings.append(("ddpm", 1000))
        labels = torch.arange(args.ddpm_n) % 10
        w = m.sampling["guidance_scale"]
        generate(model, 8, seed=0, labels=torch.arange(8) % 10, draw=drawer({"sampler": "ddim", "steps": 5,
                                                                          "guidance_scale": w}))
        for sampler, steps in settings:
            kw = {"sampler": sampler, "steps": steps, "guidance_scale": w}
            _, s = generate(model, args.ddpm_n, seed=0, labels=labels, warmup=False, draw=drawer(kw))
            print(f"sample ddpm {sampler}-{steps} (w={w:g}, {nfe(model, kw)} NFE): "
                  f"{s:8.1f} s per 1,000 images (N={args.ddpm_n})", flush=True)


def unet_openvino(n: int, rounds: int = 5, reps: int = 3) -> None:
    """The DDPM U-Net's guided sampling forward (2n images, labels + null labels), torch bf16 autocast vs the
    same module converted by OpenVINO and compiled with the bf16 hint: alternating blocks of ``reps`` forwards,
    median over ``rounds``; and the largest output difference from torch fp32."""
    import statistics

    ov = _openvino()
    if ov is None:
        print("unet: openvino not installed")
        return
    study = load_study("mnist_four", "quick")
    m = next(m for m in study.models if m.kind == "ddpm")
    torch.manual_seed(0)
    model, _ = build_model(m.kind, m.params)
    unet = model.unet.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2 * n, 1, 28, 28, generator=g)
    t = torch.randint(0, 1000, (2 * n,), generator=g)
    y = torch.cat([torch.arange(n) % 10, torch.full((n,), 10)])
    t0 = time.perf_counter()
    with torch.no_grad():
        compiled = ov.Core().compile_model(ov.convert_model(unet, example_input=(x, t, y)), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "bf16",
                                            "INFERENCE_NUM_THREADS": torch.get_num_threads()})
    print(f"unet openvino: converted and compiled in {time.perf_counter() - t0:.1f} s")

    def run_torch():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return unet(x, t, y).float()

    def run_ov():
        return torch.from_numpy(compiled([x.numpy(), t.numpy(), y.numpy()])[0])

    with torch.inference_mode():
        ref = unet(x, t, y)
    for f in (run_torch, run_ov):
        f()  # warm-up
    times = {"torch bf16": [], "openvino bf16": []}
    for _ in range(rounds):
        for name, f in (("torch bf16", run_torch), ("openvino bf16", run_ov)):
            t1 = time.perf_counter()
            for _ in range(reps):
                out = f()
            times[name].append((time.perf_counter() - t1) / reps)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, f in (("torch bf16", run_torch), ("openvino bf16", run_ov)):
        err = (f() - ref).abs().max().item()
        print(f"unet forward {name:13}: {1000 * med[name]:7.1f} ms per {2 * n}-image guided batch "
              f"(max |out - torch fp32| = {err:.4f})")
    print(f"unet openvino / torch bf16 speed: {med['torch bf16'] / med['openvino bf16']:.2f}x "
          f"(median of {rounds} alternating blocks of {reps})")


if __name__ == "__main__":
    main()
