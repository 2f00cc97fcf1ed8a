"""Figures the notebooks share: loss curves, image grids, 2-D scatters, a softmax bar chart.

Every function draws on a given ``ax`` (or makes a new figure) and returns the
``Figure``, so notebooks can compose panels and tests can inspect the result
without a screen.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .train import History, eval_mode


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def plot_history(
    history: History,
    metrics: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str = "",
    log_y: bool = False,
    smooth: int = 1,
) -> Figure:
    """Training curves (thin) and evaluation points (markers) against the step.

    ``smooth`` > 1 draws a running mean over that many steps of each training curve.
    """
    fig, ax = _axes(ax, (6, 3.5))
    names = list(metrics) if metrics is not None else [
        n for n in {**history.train, **history.evals} if n != "grad_norm"
    ]
    for name in names:
        if name in history.train:
            steps, values = zip(*history.train[name])
            values = np.asarray(values)
            if smooth > 1 and len(values) >= smooth:
                kernel = np.ones(smooth) / smooth
                values = np.convolve(values, kernel, mode="valid")
                steps = steps[smooth - 1 :]
            ax.plot(steps, values, lw=1, label=f"{name} (train)")
        if name in history.evals:
            steps, values = zip(*history.evals[name])
            ax.plot(steps, values, "o-", ms=4, label=f"{name} (eval)")
    ax.set_xlabel("step")
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if names:
        ax.legend(fontsize=8)
    return fig


def show_images(
    images: torch.Tensor | np.ndarray,
    nrow: int = 10,
    ax: Axes | None = None,
    title: str = "",
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> Figure:
    """A grid of grey images ``(N, 1, H, W)`` or ``(N, H, W)`` with values in ``value_range``."""
    x = _numpy(images)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"images must have 1 channel, got shape {x.shape}")
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"images must have shape (N, 1, H, W) or (N, H, W), got {x.shape}")
    n, h, w = x.shape
    ncol = min(nrow, n)
    rows = -(-n // ncol)
    grid = np.full((rows * (h + 1) + 1, ncol * (w + 1) + 1), value_range[0], dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = x[i]
    fig, ax = _axes(ax, (0.6 * ncol + 0.5, 0.6 * rows + 0.5))
    ax.imshow(grid, cmap="gray_r", vmin=value_range[0], vmax=value_range[1], interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    return fig


def scatter_2d(
    points: torch.Tensor | np.ndarray,
    ax: Axes | None = None,
    title: str = "",
    reference: torch.Tensor | np.ndarray | None = None,
    lim: float | None = None,
    s: float = 3.0,
) -> Figure:
    """Scatter of ``(N, 2)`` points, optionally over grey ``reference`` points (the data)."""
    p = _numpy(points)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {p.shape}")
    fig, ax = _axes(ax, (4, 4))
    if reference is not None:
        r = _numpy(reference)
        ax.scatter(r[:, 0], r[:, 1], s=s, c="0.8", label="data")
    ax.scatter(p[:, 0], p[:, 1], s=s, c="C0", label="samples" if reference is not None else None)
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title)
    if reference is not None:
        ax.legend(fontsize=8, loc="upper right")
    return fig


def bar_probabilities(
    probs: torch.Tensor | np.ndarray,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str = "",
) -> Figure:
    """Bar chart of one probability vector ``(C,)``, e.g. a softmax output."""
    p = _numpy(probs).reshape(-1)
    fig, ax = _axes(ax, (max(3, 0.5 * len(p)), 2.5))
    ax.bar(range(len(p)), p, color="C0")
    ax.set_xticks(range(len(p)))
    ax.set_xticklabels(labels if labels is not None else [str(i) for i in range(len(p))])
    ax.set_ylim(0, 1)
    ax.set_title(title)
    return fig


def plot_confusion(
    counts: torch.Tensor | np.ndarray, class_names: Sequence[str], ax: Axes | None = None, title: str = ""
) -> Figure:
    """A confusion matrix ``(C, C)`` (rows: true class, columns: predicted) as a heat map of row shares.

    Each row is divided by its total, so the diagonal reads as each class's recall
    whatever the class sizes; the cells print the share in percent.
    """
    counts = _numpy(counts).astype(float)
    if counts.ndim != 2 or counts.shape != (len(class_names), len(class_names)):
        raise ValueError(f"counts must be ({len(class_names)}, {len(class_names)}), got {counts.shape}")
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = _axes(ax, (1 + 0.6 * len(class_names), 0.8 + 0.55 * len(class_names)))
    ax.imshow(shares, vmin=0, vmax=1, cmap="Blues")
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(j, i, f"{100 * shares[i, j]:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(class_names)))
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)))
    ax.set_yticklabels(class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig


# --------------------------------------------------------------------------
# Attention (notebook 04): heat maps and a per-layer / per-head explorer
# --------------------------------------------------------------------------


def plot_attention(
    weights: torch.Tensor | np.ndarray,
    ax: Axes | None = None,
    title: str = "",
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    colorbar: bool = False,
) -> Figure:
    """Heat map of one attention matrix ``(T_q, T_k)``: row i = how query i spreads its weight over the keys."""
    w = _numpy(weights)
    if w.ndim != 2:
        raise ValueError(f"weights must have shape (T_q, T_k), got {w.shape}")
    fig, ax = _axes(ax, (0.3 * w.shape[1] + 1.5, 0.3 * w.shape[0] + 1.2))
    image = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=max(1e-9, float(w.max())), interpolation="nearest")
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    for setter, labels, n in ((ax.set_xticks, key_labels, w.shape[1]), (ax.set_yticks, query_labels, w.shape[0])):
        if labels is not None:
            if len(labels) != n:
                raise ValueError(f"expected {n} labels, got {len(labels)}")
            setter(range(n), labels=list(labels), fontsize=8)
    ax.set_title(title)
    if colorbar:
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def plot_attention_heads(
    maps: Sequence[torch.Tensor | np.ndarray],
    example: int = 0,
    labels: Sequence[str] | None = None,
    target_labels: Sequence[str] | None = None,
) -> Figure:
    """A grid of heat maps, one row per layer and one column per head.

    maps: one ``(N, H, T_q, T_k)`` tensor per layer (as ``SequenceModel`` returns);
    ``example`` picks which of the N sequences to draw.
    """
    arrays = [_numpy(m) for m in maps]
    if not arrays or any(a.ndim != 4 for a in arrays):
        raise ValueError("maps must be a non-empty list of (N, H, T_q, T_k) tensors")
    layers, heads = len(arrays), arrays[0].shape[1]
    fig, axes = plt.subplots(layers, heads, figsize=(2.4 * heads, 2.4 * layers), squeeze=False)
    for layer, a in enumerate(arrays):
        for head in range(heads):
            plot_attention(
                a[example, head], ax=axes[layer, head], title=f"layer {layer} head {head}",
                key_labels=labels, query_labels=target_labels,
            )
    fig.tight_layout()
    return fig


def attention_explorer(
    maps: Sequence[torch.Tensor | np.ndarray],
    tokens: torch.Tensor | np.ndarray | None = None,
    targets: torch.Tensor | np.ndarray | None = None,
):
    """An ipywidgets explorer: pick an example, a layer and a head (or their mean) and see its attention map.

    maps: one ``(N, H, T_q, T_k)`` tensor per layer; tokens (N, T_k) and targets
    (N, T_q) label the axes. Works with ipywidgets 7.7 and 8.
    """
    import ipywidgets as widgets

    arrays = [_numpy(m) for m in maps]
    if not arrays or any(a.ndim != 4 for a in arrays):
        raise ValueError("maps must be a non-empty list of (N, H, T_q, T_k) tensors")
    n, heads = arrays[0].shape[:2]
    toks = None if tokens is None else _numpy(tokens)
    tgts = None if targets is None else _numpy(targets)

    def show(example: int = 0, layer: int = 0, head: str = "0") -> None:
        a = arrays[layer][example]
        w = a.mean(axis=0) if head == "mean" else a[int(head)]
        fig, ax = plt.subplots(figsize=(4.2, 3.8))
        plot_attention(
            w, ax=ax, colorbar=True, title=f"example {example}, layer {layer}, head {head}",
            key_labels=None if toks is None else [str(t) for t in toks[example]],
            query_labels=None if tgts is None else [str(t) for t in tgts[example]],
        )
        if toks is not None:
            ax.set_xlabel("key: input token")
        if tgts is not None:
            ax.set_ylabel("query: target token")
        plt.show()

    return widgets.interactive(
        show,
        example=widgets.IntSlider(value=0, min=0, max=n - 1, description="example"),
        layer=widgets.IntSlider(value=0, min=0, max=len(arrays) - 1, description="layer"),
        head=widgets.Dropdown(options=[str(h) for h in range(heads)] + ["mean"], value="0", description="head"),
    )


# --------------------------------------------------------------------------
# GANs (notebook 01): a live training plot and a latent-space explorer
# --------------------------------------------------------------------------


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with Jupyter
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ != "TerminalInteractiveShell"


class LivePlot:
    """A figure that redraws in place while a model trains; pass it as ``run_loop``'s ``callback``.

    Every ``every`` steps (and after step ``total_steps - 1``) it draws the
    training ``metrics`` (running mean over ``smooth`` steps) and, when
    ``draw_samples(ax)`` is given, a second panel such as a scatter of the
    current samples. In a notebook the figure is replaced through an IPython
    display handle, so one picture updates during training; elsewhere it is
    drawn but not shown. ``figures`` counts the redraws.
    """

    def __init__(
        self,
        total_steps: int,
        every: int,
        metrics: Sequence[str] = ("d_loss", "g_loss"),
        draw_samples=None,
        title: str = "",
        smooth: int = 1,
    ):
        if total_steps <= 0 or every <= 0:
            raise ValueError(f"total_steps and every must be positive, got {total_steps} and {every}")
        self.total_steps, self.every, self.metrics = total_steps, every, list(metrics)
        self.draw_samples, self.title, self.smooth = draw_samples, title, smooth
        self.handle = None
        self.figures = 0

    def __call__(self, step: int, history: History) -> None:
        if (step + 1) % self.every == 0 or step + 1 == self.total_steps:
            self.draw(step, history)

    def draw(self, step: int, history: History) -> Figure:
        panels = 2 if self.draw_samples is not None else 1
        fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.5), squeeze=False)
        shown = [m for m in self.metrics if m in history.train]
        smooth = min(self.smooth, max(1, len(next(iter(history.train.values()), [])) // 2))
        plot_history(history, shown, ax=axes[0, 0], title=f"{self.title} step {step + 1}", smooth=smooth)
        if self.draw_samples is not None:
            self.draw_samples(axes[0, 1])
        fig.tight_layout()
        self.figures += 1
        if _in_notebook():
            from IPython.display import display

            if self.handle is None:
                self.handle = display(fig, display_id=True)
            else:
                self.handle.update(fig)
        plt.close(fig)
        return fig


def latent_explorer(generator, latent_dim: int, label_fn=None, strip: int = 9, max_seed: int = 99):
    """An ipywidgets explorer of a generator's latent space (ipywidgets 7.7 and 8).

    Pick a base latent vector (by ``seed``), one coordinate (``dim``) and its
    ``value``: the first panel shows G(z); the strip shows G(z) as that one
    coordinate sweeps from -3 to 3. ``generator`` maps ``(B, latent_dim)`` to
    images ``(B, 1, H, W)``; ``label_fn(images) -> (B,) labels`` (optional, e.g.
    the digits classifier) titles the panels.
    """
    import ipywidgets as widgets

    if latent_dim <= 0:
        raise ValueError(f"latent_dim must be positive, got {latent_dim}")

    @torch.no_grad()
    def show(seed: int = 0, dim: int = 0, value: float = 0.0) -> None:
        was_training = getattr(generator, "training", False)
        if hasattr(generator, "eval"):
            generator.eval()
        try:
            z = torch.randn(1, latent_dim, generator=torch.Generator().manual_seed(seed))
            z[0, dim] = value
            sweep = z.repeat(strip, 1)
            sweep[:, dim] = torch.linspace(-3, 3, strip)
            images = generator(torch.cat([z, sweep])).cpu()
        finally:
            if hasattr(generator, "train"):
                generator.train(was_training)
        labels = None if label_fn is None else [int(v) for v in label_fn(images)]
        fig, axes = plt.subplots(1, 2, figsize=(9, 2.4), gridspec_kw={"width_ratios": [1, 4]})
        show_images(images[:1], nrow=1, ax=axes[0], title=f"G(z): {labels[0]}" if labels else "G(z)")
        sweep_title = f"z[{dim}] from -3 to 3" + (f"   labels {labels[1:]}" if labels else "")
        show_images(images[1:], nrow=strip, ax=axes[1], title=sweep_title)
        plt.show()

    return widgets.interactive(
        show,
        seed=widgets.IntSlider(value=0, min=0, max=max_seed, description="seed"),
        dim=widgets.Dropdown(options=list(range(latent_dim)), value=0, description="dim"),
        value=widgets.FloatSlider(value=0.0, min=-3.0, max=3.0, step=0.25, description="value"),
    )


# --------------------------------------------------------------------------
# Diffusion (notebooks 02 and 03): noising strips, SNR curves, the t-slider explorer
# --------------------------------------------------------------------------


def _noised(x0: torch.Tensor, schedule, t: int, seed: int = 0) -> torch.Tensor:
    """``x_t`` for every example at one step ``t``, with noise fixed by ``seed`` (so a slider moves smoothly)."""
    from .diffusion import q_sample

    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    return q_sample(x0, torch.full((len(x0),), int(t)), schedule, noise)


def noising_strip(x0: torch.Tensor, schedule, ts: Sequence[int], seed: int = 0, title: str = "") -> Figure:
    """Data being noised: one column per step in ``ts``.

    Images ``(N, 1, H, W)`` give an N-row grid (row = example, column = t); points ``(N, 2)``
    give one scatter panel per t.
    """
    ts = [int(t) for t in ts]
    if x0.dim() == 4:
        cols = torch.stack([_noised(x0, schedule, t, seed) for t in ts], dim=1)  # (N, len(ts), 1, H, W)
        fig = show_images(cols.flatten(0, 1).clamp(-1.5, 1.5), nrow=len(ts), value_range=(-1.5, 1.5))
        fig.axes[0].set_title(title or "t = " + ", ".join(map(str, ts)), fontsize=9)
        return fig
    if x0.dim() == 2 and x0.shape[1] == 2:
        fig, axes = plt.subplots(1, len(ts), figsize=(2.2 * len(ts), 2.4))
        for ax, t in zip(np.atleast_1d(axes), ts):
            scatter_2d(_noised(x0, schedule, t, seed), ax=ax, lim=3.0, s=1.0, title=f"t = {t}")
            ax.set_xticks([])
            ax.set_yticks([])
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig
    raise ValueError(f"x0 must be images (N, 1, H, W) or points (N, 2), got {tuple(x0.shape)}")


def plot_snr(schedules: dict, ax: Axes | None = None) -> Figure:
    """Signal-to-noise ratio ``alpha_bar / (1 - alpha_bar)`` against t, log scale, one curve per schedule."""
    fig, ax = _axes(ax, (5, 3.2))
    for name, schedule in schedules.items():
        ax.plot(_numpy(schedule.snr()), label=name)
    ax.set_yscale("log")
    ax.axhline(1.0, color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("t")
    ax.set_ylabel("SNR = alpha_bar / (1 - alpha_bar)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def diffusion_explorer(images: torch.Tensor, points: torch.Tensor, schedules: dict, seed: int = 0):
    """An ipywidgets slider over t: digits and 2-D points noised by each schedule, side by side.

    images: (N, 1, H, W) in [-1, 1]; points: (M, 2); schedules: name -> NoiseSchedule (same T).
    The noise is fixed, so moving the slider shows one sample path of q(x_t | x_0).
    Works with ipywidgets 7.7 and 8.
    """
    import ipywidgets as widgets

    if not schedules:
        raise ValueError("schedules must name at least one NoiseSchedule")
    T = min(s.T for s in schedules.values())

    def show(t: int = 0) -> None:
        fig, axes = plt.subplots(2, len(schedules), figsize=(3.6 * len(schedules), 6.4), squeeze=False)
        for col, (name, schedule) in enumerate(schedules.items()):
            ab = float(schedule.alpha_bars[t])
            show_images(
                _noised(images, schedule, t, seed).clamp(-1.5, 1.5), nrow=int(np.sqrt(len(images))) or 1,
                ax=axes[0, col], value_range=(-1.5, 1.5), title=f"{name}: t = {t}, alpha_bar = {ab:.3f}",
            )
            scatter_2d(_noised(points, schedule, t, seed), ax=axes[1, col], lim=3.0, s=1.0)
        fig.tight_layout()
        plt.show()

    return widgets.interactive(
        show, t=widgets.IntSlider(value=0, min=0, max=T - 1, step=max(1, T // 100), description="t")
    )


def reverse_chain_figure(chain: dict, reference: torch.Tensor | None = None, lim: float = 2.0) -> Figure:
    """2-D samples along the reverse chain: ``chain`` maps t -> points (N, 2) (-1 = the final samples)."""
    keys = sorted(chain, reverse=True)
    fig, axes = plt.subplots(1, len(keys), figsize=(2.3 * len(keys), 2.5))
    for ax, t in zip(np.atleast_1d(axes), keys):
        scatter_2d(chain[t], ax=ax, reference=reference, lim=lim, s=1.0, title="samples" if t < 0 else f"x at t = {t}")
        ax.set_xticks([])
        ax.set_yticks([])
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------
# Pre-training (notebook 05): the sampling explorer
# --------------------------------------------------------------------------


def sampling_explorer(model, encode, decode, prompt: str = "Return the ", max_new_tokens: int = 120, show: int = 20):
    """An ipywidgets explorer of temperature, top-k and top-p (ipywidgets 7.7 and 8).

    Left: the model's next-token distribution after ``prompt`` once the
    settings are applied (the ``show`` most likely tokens; grey bars are the
    plain softmax, coloured ones what is left to sample from). Below: a
    continuation of ``max_new_tokens`` tokens sampled with those settings.
    ``top_k`` 0 and ``top_p`` 1 mean "off" (top-p starts at 0.9, a common
    choice). ``encode``/``decode`` map text to
    ids and back.
    """
    import ipywidgets as widgets

    from .gpt import generate, next_token_probs

    start = torch.tensor([encode(prompt)], dtype=torch.long)
    if start.shape[1] == 0:
        raise ValueError("the prompt must encode to at least one token")
    with eval_mode(model), torch.no_grad():
        last_logits = model(start[:, -model.config.block_size :])[:, -1, :]  # (1, V)

    def draw(temperature: float = 1.0, top_k: int = 0, top_p: float = 0.9, seed: int = 0) -> None:
        options = {"top_k": top_k or None, "top_p": top_p if top_p < 1 else None}
        plain = next_token_probs(last_logits, temperature)[0]
        kept = next_token_probs(last_logits, temperature, **options)[0]
        order = torch.argsort(plain, descending=True)[:show]
        labels = [repr(decode([int(i)]))[1:-1] or "?" for i in order]
        fig, ax = plt.subplots(figsize=(9, 2.6))
        x = np.arange(len(order))
        ax.bar(x, plain[order].numpy(), color="0.8", label="softmax(logits / T)")
        ax.bar(x, kept[order].numpy(), width=0.5, label="after top-k / top-p")
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylabel("probability")
        ax.set_title(f"next token after {prompt!r}: {int((kept > 0).sum())} token(s) can be sampled")
        ax.legend(fontsize=8)
        fig.tight_layout()
        plt.show()
        out = generate(model, start, max_new_tokens, temperature=temperature, use_cache=True,
                       generator=torch.Generator().manual_seed(seed), **options)
        print(prompt + decode(out[0, start.shape[1]:].tolist()))

    return widgets.interactive(
        draw,
        temperature=widgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.1, description="temperature"),
        top_k=widgets.IntSlider(value=0, min=0, max=int(last_logits.shape[-1]), description="top_k"),
        top_p=widgets.FloatSlider(value=0.9, min=0.05, max=1.0, step=0.05, description="top_p"),
        seed=widgets.IntSlider(value=0, min=0, max=20, description="seed"),
    )


# --------------------------------------------------------------------------
# Instruction tuning (notebook 07): the assistant explorer
# --------------------------------------------------------------------------


def instruction_explorer(models: dict, tokenizer, respond, instruction: str = "Reverse the letters of python",
                         max_new_tokens: int = 20):
    """An ipywidgets explorer: type an instruction, read each model's answer side by side (ipywidgets 7.7 and 8).

    ``models`` maps a name to a model; ``respond(model, tokenizer, instruction, max_new_tokens=..., temperature=...,
    generator=...)`` returns the response text (notebook 07's ``generate_response``). ``temperature`` 0 is greedy;
    ``seed`` picks the sampling generator's seed for temperatures above 0.
    """
    import ipywidgets as widgets

    def show(instruction: str = instruction, temperature: float = 0.0, seed: int = 0) -> None:
        width = max(len(name) for name in models)
        setting = "greedy" if temperature == 0 else f"temperature {temperature:.1f}, seed {seed}"
        print(f"instruction: {instruction!r} ({setting})")
        for name, model in models.items():
            g = torch.Generator().manual_seed(seed)
            try:
                text = respond(model, tokenizer, instruction, max_new_tokens=max_new_tokens,
                               temperature=temperature, generator=g)
            except ValueError as exc:  # e.g. a character the tokenizer does not know
                text = f"<cannot answer: {exc}>"
            print(f"  {name:{width}s}  {text!r}")

    return widgets.interactive(
        show,
        instruction=widgets.Text(value=instruction, description="instruction", continuous_update=False),
        temperature=widgets.FloatSlider(value=0.0, min=0.0, max=1.5, step=0.1, description="temperature"),
        seed=widgets.IntSlider(value=0, min=0, max=20, description="seed"),
    )
