"""The mutants of ``make mutation-check`` (see ``scripts/mutation_check.py``): one-line breaks of the product code
that the fast tests must catch.

Each :class:`Mutant` replaces ``pattern`` (which must occur exactly once in ``file``) by ``replacement``. ``tests``
are run first (with ``-x``), so the test expected to kill it is listed there; the rest of the fast suite runs only
if they pass. ``area`` groups mutants in the report. To add mutants for a new feature (CAM targets, colour scales,
...), append entries with a new ``area``; a mutant whose pattern no longer matches fails the check as ``stale``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MUTANTS", "Mutant"]


@dataclass(frozen=True)
class Mutant:
    """One mutation: in ``file`` (relative to the repository), ``pattern`` becomes ``replacement``."""

    name: str
    area: str
    file: str
    pattern: str
    replacement: str
    description: str
    tests: tuple[str, ...] = ()


M = Mutant
REDUCE, GEOM, DIFF = "featvis_run/maps/reduce.py", "featvis_run/maps/geometry.py", "featvis_run/maps/diff.py"
RENDER, COLOUR = "featvis_run/drawing/render.py", "featvis_run/drawing/colour.py"
DRAW, SETTINGS = "featvis_run/experiments/draw.py", "featvis_run/experiments/settings.py"
OPENMMLAB, CACHE = "featvis_run/models/openmmlab.py", "featvis_run/store/cache.py"
STRIDES, TOKENS = "featvis_run/maps/strides.py", "featvis_run/maps/tokens.py"

# The eight mutations of issue 14 come first.
ISSUE_14 = [
    M(
        "topk-reversed",
        "reducers",
        REDUCE,
        "np.argsort(-sums, ",
        "np.argsort(sums, ",
        "top-k ranking reversed (smallest spatial sums first)",
        ("tests/test_reduce.py",),
    ),
    M(
        "valid-cells-round-down",
        "geometry",
        GEOM,
        "math.ceil((offset + img) / stride - 1e-6)",
        "math.floor((offset + img) / stride + 1e-6)",
        "valid_cells rounds a partly covered cell down",
        ("tests/test_geometry.py",),
    ),
    M(
        "use-norm-ignored",
        "rendering",
        DRAW,
        "        if settings.use_norm:\n",
        "        if False:\n",
        "use_norm ignored when drawing",
        ("tests/test_draw_levels.py",),
    ),
    M(
        "diff-a-b-swapped",
        "diff",
        "featvis_run/experiments/diff.py",
        "draw_level(im.array, level, a, b, ",
        "draw_level(im.array, level, b, a, ",
        "A and B swapped at the diff call site",
        ("tests/test_diff_run.py",),
    ),
    M(
        "cache-write-not-atomic",
        "cache",
        CACHE,
        "write_bytes(path, data, overwrite=True, tmp_dir=tmp_dir)",
        "path.parent.mkdir(parents=True, exist_ok=True) or path.write_bytes(data)",
        "cache entries written in place (not temp file + rename)",
        ("tests/test_cache.py::test_entries_are_replaced_by_rename_never_rewritten_in_place",),
    ),
    M(
        "source-key-without-recorder",
        "cache key",
        "featvis_run/models/source.py",
        "self.cache.key(self.plan.identity, im.sha256, self.spec)",
        "self.cache.key(self.plan.identity, im.sha256, {})",
        "recorder spec dropped from the cache key in the feature source",
        ("tests/test_model_identity.py",),
    ),
    M(
        "identity-without-pipeline",
        "cache key",
        OPENMMLAB,
        '                "pipeline": self.test_pipeline_cfg(cfg, mc.test_scale),\n',
        "",
        "test pipeline dropped from the model identity",
        ("tests/test_model_identity.py",),
    ),
    M(
        "resize-chunks-scrambled",
        "diff",
        DIFF,
        "chunks.append(out.reshape(h, w, -1)",
        "chunks.insert(0, out.reshape(h, w, -1)",
        "channel chunks of _resize_chw concatenated in the wrong order",
        ("tests/test_diff.py",),
    ),
]

MORE = [
    # reducers
    M(
        "squeeze-mean-is-max",
        "reducers",
        REDUCE,
        "else feat.mean(axis=0, keepdims=True)",
        "else feat.max(axis=0, keepdims=True)",
        "squeeze_mean takes the max",
        ("tests/test_reduce.py",),
    ),
    M(
        "standardize-population-std",
        "reducers",
        REDUCE,
        "ddof=1 if flat.shape[1] > 1 else 0",
        "ddof=0 if flat.shape[1] > 1 else 0",
        "use_norm divides by the population std",
        ("tests/test_reduce.py",),
    ),
    M(
        "topk-nonfinite-sums",
        "non-finite",
        REDUCE,
        "sums = np.where(np.isfinite(flat), flat, 0.0).sum(axis=1, dtype=np.float64)",
        "sums = flat.sum(axis=1, dtype=np.float64)",
        "channels with NaN ranked by a NaN sum",
        ("tests/test_draw_levels.py",),
    ),
    M(
        "rgb-topk-as-heatmap",
        "rendering",
        REDUCE,
        'kind="image" if c == 3 else "single"',
        'kind="single"',
        "a 3-channel topk=-1 map drawn as a heatmap, not RGB",
        ("tests/test_render_options.py",),
    ),
    # geometry
    M(
        "cell-start-rounds-up",
        "geometry",
        GEOM,
        "math.floor(offset / stride + 1e-6)",
        "math.ceil(offset / stride - 1e-6)",
        "a partly covered first cell (centred image) is cropped away",
        ("tests/test_geometry.py",),
    ),
    M(
        "stride-power-floor",
        "geometry",
        GEOM,
        "2 ** math.ceil(math.log2(ratio))",
        "2 ** math.floor(math.log2(ratio))",
        "stride-2 rounding taken down",
        ("tests/test_geometry.py",),
    ),
    M(
        "upsample-skip-sign",
        "geometry",
        GEOM,
        "(geom.offset_hw[axis] - start * stride)",
        "(start * stride - geom.offset_hw[axis])",
        "upsampled map shifted the wrong way for a centred image",
        ("tests/test_geometry.py",),
    ),
    M(
        "crop-from-zero",
        "geometry",
        GEOM,
        "return feat[..., r0:r1, c0:c1]",
        "return feat[..., : r1 - r0, : c1 - c0]",
        "valid crop starts at cell 0 whatever the offset",
        ("tests/test_geometry.py",),
    ),
    # rendering
    M(
        "blend-alpha-swapped",
        "rendering",
        COLOUR,
        "cv2.addWeighted(image, 1.0 - alpha, heat, alpha, 0)",
        "cv2.addWeighted(image, alpha, heat, 1.0 - alpha, 0)",
        "alpha weights the image",
        ("tests/test_render_options.py",),
    ),
    M(
        "colormap-ignored",
        "rendering",
        COLOUR,
        "colormap_id(colormap)), map2d)",
        'colormap_id("jet")), map2d)',
        "output.colormap ignored",
        ("tests/test_render_options.py",),
    ),
    M(
        "signed-colours-ignored",
        "rendering",
        RENDER,
        "return colorize_signed(map2d) if opts.signed else ",
        "return ",
        "signed diffs drawn with the min-max colormap",
        ("tests/test_render_options.py",),
    ),
    M(
        "labels-always-on",
        "rendering",
        RENDER,
        "for c in reduced.channels] if opts.label else []",
        "for c in reduced.channels]",
        "layout.label=false still labels tiles",
        ("tests/test_render_options.py",),
    ),
    M(
        "boxes-not-scaled",
        "rendering",
        RENDER,
        "scale = (canvas.shape[0] / geom.ori_hw[0], canvas.shape[1] / geom.ori_hw[1])",
        "scale = (1.0, 1.0)",
        "boxes drawn at original coordinates on a resized canvas",
        ("tests/test_render_options.py",),
    ),
    M(
        "draw-boxes-ignored",
        "rendering",
        SETTINGS,
        "if self.draw_boxes else None",
        "if True else None",
        "output.draw_boxes=false still draws boxes",
        ("tests/test_draw_levels.py",),
    ),
    M(
        "score-thr-ignored",
        "rendering",
        SETTINGS,
        "predictions.above(self.pred_score_thr)",
        "predictions",
        "boxes below output.pred_score_thr drawn",
        ("tests/test_draw_levels.py",),
    ),
    M(
        "format-always-png",
        "rendering",
        SETTINGS,
        'fmt = out.format.value if hasattr(out.format, "value") else str(out.format)',
        'fmt = "png"',
        "output.format=jpg writes PNG",
        ("tests/test_draw_levels.py",),
    ),
    M(
        "grid-column-major",
        "rendering",
        "featvis_run/drawing/layout.py",
        "r, c = divmod(i, cols)",
        "c, r = divmod(i, rows)",
        "top-k tiles placed column-major",
        ("tests/test_render_options.py",),
    ),
    # diff
    M(
        "signed-diff-b-minus-a",
        "diff",
        DIFF,
        "        return a - b\n",
        "        return b - a\n",
        "signed diff is B - A",
        ("tests/test_diff.py",),
    ),
    M(
        "cosine-clipped-at-zero",
        "diff",
        DIFF,
        "np.dot(x / nx, y / ny), -1.0, 1.0)",
        "np.dot(x / nx, y / ny), 0.0, 1.0)",
        "cosine of anti-correlated maps reported as 0",
        ("tests/test_diff.py",),
    ),
    M(
        "relative-diff-one-sided",
        "diff",
        DIFF,
        "delta / (np.abs(a) + np.abs(b) + dtype.type(eps))",
        "delta / (np.abs(a) + dtype.type(eps))",
        "relative diff divides by |A| only",
        ("tests/test_diff.py",),
    ),
    M(
        "levels-paired-by-order",
        "diff",
        "featvis_run/experiments/diff.py",
        "pairs.append((key.level, key, others[0]))",
        "pairs.append((key.level, key, keys_b[len(pairs)]))",
        "levels paired by position, not name",
        ("tests/test_diff_run.py",),
    ),
    # cache key and model identity
    M(
        "key-without-libraries",
        "cache key",
        CACHE,
        ', "libs": library_versions()}',
        "}",
        "library versions dropped from the cache key",
        ("tests/test_model_identity.py",),
    ),
    M(
        "identity-without-seed",
        "cache key",
        OPENMMLAB,
        'sha or f"random-init seed {mc.seed}"',
        'sha or "random-init"',
        "random-init seed dropped from the model identity",
        ("tests/test_model_identity.py",),
    ),
    M(
        "identity-without-checkpoint",
        "cache key",
        OPENMMLAB,
        '"weights": sha or f',
        '"weights": None or f',
        "checkpoint sha256 dropped from the model identity",
        ("tests/test_model_identity.py",),
    ),
    M(
        "identity-without-device",
        "cache key",
        OPENMMLAB,
        '                "device": device,\n',
        "",
        "device dropped from the model identity",
        ("tests/test_model_identity.py",),
    ),
    M(
        "cache-hit-ignores-passes",
        "cache key",
        "featvis_run/experiments/common.py",
        '"cache_hit": configured and passes == 0 and cache.stats.hits > 0',
        '"cache_hit": configured and cache.stats.hits > 0',
        "a run that also ran the model reported as a cache hit",
        ("tests/test_model_identity.py",),
    ),
    # recorder
    M(
        "hooks-left-installed",
        "recorder",
        "featvis_run/recording/recorder.py",
        "self._undo.pop()()",
        "self._undo.pop()",
        "hooks and patches not removed on exit",
        ("tests/test_recorder.py::test_hooks_and_patches_are_removed_on_exit",),
    ),
    M(
        "data-path-steps-as-strings",
        "recorder",
        "featvis_run/recording/select.py",
        "out.append(int(text))",
        "out.append(text)",
        "data_idx '1.0' steps kept as strings",
        ("tests/test_levels.py::test_data_paths_reach_nested_tuples_dicts_and_attributes",),
    ),
    # manifest and non-finite counting
    M(
        "status-always-ok",
        "manifest",
        "featvis_run/store/manifest.py",
        '"status": "ok" if self.ok else "failed"',
        '"status": "ok"',
        "a run with failures saved as ok",
        ("tests/test_draw_levels.py",),
    ),
    M(
        "stats-include-nan",
        "non-finite",
        DRAW,
        "finite = maps[np.isfinite(maps)]",
        "finite = maps.ravel()",
        "min/max/mean taken over NaN too",
        ("tests/test_draw_levels.py",),
    ),
    M(
        "non-finite-counts-nan-only",
        "non-finite",
        DRAW,
        "non_finite=int(feat.size - np.count_nonzero(np.isfinite(feat)))",
        "non_finite=int(np.count_nonzero(np.isnan(feat)))",
        "infinities not counted as non-finite",
        ("tests/test_draw_levels.py",),
    ),
    # input selection
    M(
        "shard-contiguous",
        "inputs",
        "featvis_run/store/images.py",
        "return list(paths[i::n])",
        "return list(paths[i * len(paths) // n : (i + 1) * len(paths) // n])",
        "images.shard takes a contiguous slice, not every n-th image",
        ("tests/test_multi_image.py",),
    ),
    M(
        "limit-from-end",
        "inputs",
        "featvis_run/store/images.py",
        "paths = paths[:limit]",
        "paths = paths[-limit:]",
        "images.limit keeps the last images",
        ("tests/test_multi_image.py",),
    ),
    M(
        "duplicate-stems-collide",
        "inputs",
        "featvis_run/experiments/inputs.py",
        'ids.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")',
        "ids.append(stem)",
        "two inputs with one stem write into one folder",
        ("tests/test_multi_image.py",),
    ),
    # stride naming
    M(
        "stride-axis-fewer-cells",
        "strides",
        STRIDES,
        "axis = 0 if map_hw[0] >= map_hw[1] else 1",
        "axis = 1 if map_hw[0] >= map_hw[1] else 0",
        "stride measured along the axis with fewer cells",
        ("tests/test_strides_tokens.py",),
    ),
    M(
        "stride-ties-unnumbered",
        "strides",
        STRIDES,
        'f"{prefix}{k}" if seen[k] == 1 else f"{prefix}{k}_{seen[k]}"',
        'f"{prefix}{k}"',
        "levels sharing a stride get the same name",
        ("tests/test_strides_tokens.py",),
    ),
    M(
        "strides-coarse-first",
        "strides",
        STRIDES,
        "key=lambda i: (exponents[i], i)",
        "key=lambda i: (-exponents[i], i)",
        "levels ordered coarse to fine",
        ("tests/test_strides_tokens.py",),
    ),
    M(
        "stride-exponent-floor",
        "strides",
        STRIDES,
        "max(0, round(math.log2(stride)))",
        "max(0, math.floor(math.log2(stride)))",
        "non-power-of-two strides rounded down",
        ("tests/test_strides_tokens.py",),
    ),
    # token grids
    M(
        "tokens-transposed",
        "tokens",
        TOKENS,
        "grid.transpose(0, 3, 1, 2)",
        "grid.transpose(0, 3, 2, 1)",
        "token maps transposed (W, H)",
        ("tests/test_strides_tokens.py",),
    ),
    M(
        "extra-tokens-from-end",
        "tokens",
        TOKENS,
        "grid = tokens[:, extra_tokens:, :]",
        "grid = tokens[:, : length - extra_tokens, :]",
        "class tokens dropped from the end",
        ("tests/test_strides_tokens.py",),
    ),
    M(
        "token-levels-offset",
        "tokens",
        TOKENS,
        "        start += n\n",
        "        start = n\n",
        "third token level read from the wrong offset",
        ("tests/test_strides_tokens.py",),
    ),
    M(
        "token-grid-no-power-preference",
        "tokens",
        TOKENS,
        "fits = powers if len(powers) == 1 else fits",
        "fits = fits",
        "several fitting strides: the power of two no longer wins",
        ("tests/test_strides_tokens.py",),
    ),
]

MUTANTS: list[Mutant] = [*ISSUE_14, *MORE]
