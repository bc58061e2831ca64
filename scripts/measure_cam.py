"""Print the Grad-CAM concentration ratios on the demo scene: for target=class:<name>, the fused map's mean inside
that class's boxes over its mean on the background and inside the other classes' boxes.

    PYTHONPATH=. python scripts/measure_cam.py
"""

from __future__ import annotations

from featvis_run.demo.cam_check import measure_demo_scene


def main() -> None:
    print(f"{'target':<16}{'inside':>10}{'background':>12}{'others':>10}{'/background':>13}{'/others':>9}")
    for name, r in measure_demo_scene().items():
        print(
            f"{'class:' + name:<16}{r['inside']:>10.4f}{r['background']:>12.4f}{r['others']:>10.4f}"
            f"{r['vs_background']:>12.2f}x{r['vs_others']:>8.2f}x"
        )


if __name__ == "__main__":
    main()
