"""COCO annotations as input: parsing errors in one line, matching by file_name, the class filter (fast)."""

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from featvis_run.analysis.annotations import annotate_inputs, read_coco
from featvis_run.drawing.boxes import GT_COLOUR, draw_ground_truth
from featvis_run.errors import ConfigError, InputError

from .conftest import console_script

CATS = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]


def _coco(tmp_path: Path, images=None, annotations=None, categories=None, name="ann.json") -> Path:
    data = {
        "images": images
        if images is not None
        else [
            {"id": 1, "file_name": "a/x.png", "height": 20, "width": 30},
            {"id": 2, "file_name": "y.png", "height": 20, "width": 30},
        ],
        "annotations": annotations
        if annotations is not None
        else [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 5]},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [0, 0, 4, 4]},
        ],
        "categories": categories if categories is not None else CATS,
    }
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _images(root: Path, names, hw=(20, 30)) -> list[tuple[str, Path]]:
    out = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((*hw, 3), 128, np.uint8))
        out.append((Path(name).stem, path))
    return out


def test_boxes_are_read_as_xyxy_with_their_class_names(tmp_path):
    ann = read_coco(_coco(tmp_path))
    truth = ann.images["a/x.png"]
    assert truth.boxes == ((1.0, 2.0, 11.0, 7.0),) and truth.labels == ("circle",) and truth.hw == (20, 30)
    assert truth.record() == {"boxes": [{"bbox": [1.0, 2.0, 11.0, 7.0], "label": "circle"}]}
    assert ann.categories == ("circle", "square")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"images": "x"}, "has no 'images' list"),
        ({"annotations": [{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1]}]}, "image_id 9"),
        ({"annotations": [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1]}]}, "category_id 7"),
        ({"annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}]}, "is not [x, y, width, height]"),
        ({"annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1]}]}, "negative width"),
        ({"annotations": [{"image_id": 1, "category_id": 1, "bbox": [25, 0, 10, 1]}]}, "outside its image a/x.png"),
        ({"images": [{"id": 1, "file_name": "x.png"}, {"id": 2, "file_name": "./x.png"}]}, "appears twice"),
        ({"categories": [{"id": 1}]}, "categories[0] needs an 'id' and a 'name'"),
    ],
)
def test_a_bad_coco_json_is_one_line_naming_the_file_and_the_first_problem(tmp_path, change, problem):
    path = _coco(tmp_path, **change)
    with pytest.raises(InputError) as err:
        read_coco(path)
    message = str(err.value)
    assert message.startswith(f"images.annotations={str(path)!r}: ") and problem in message and "\n" not in message


def test_not_json_and_missing_file_say_so(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="is not JSON"):
        read_coco(bad)
    with pytest.raises(InputError, match="no such file"):
        read_coco(tmp_path / "none.json")


def test_images_match_by_path_under_the_folder_then_by_unique_basename(tmp_path):
    root = tmp_path / "imgs"
    inputs = _images(root, ["a/x.png", "b/y.png", "z.png"])
    out = annotate_inputs(inputs, read_coco(_coco(tmp_path)), root, None)
    assert [i for i, _ in out.inputs] == ["x", "y", "z"]  # images without annotations are kept
    assert out.truth["x"].file_name == "a/x.png"  # the relative path
    assert out.truth["y"].file_name == "y.png"  # b/y.png: by its basename
    assert "z" not in out.truth and any("1 of 3 images have no entry" in n for n in out.notes)


def test_a_basename_two_json_images_share_matches_only_by_path(tmp_path):
    images = [{"id": 1, "file_name": "a/x.png"}, {"id": 2, "file_name": "b/x.png"}]
    ann = read_coco(_coco(tmp_path, images=images, annotations=[]))
    root = tmp_path / "imgs"
    inputs = _images(root, ["b/x.png", "c/x.png"])
    inputs = [("b", inputs[0][1]), ("c", inputs[1][1])]
    out = annotate_inputs(inputs, ann, root, None)
    assert out.truth["b"].file_name == "b/x.png" and "c" not in out.truth


def test_the_class_filter_keeps_the_images_holding_any_of_the_classes(tmp_path):
    root = tmp_path / "imgs"
    inputs = _images(root, ["a/x.png", "y.png", "z.png"])
    ann = read_coco(_coco(tmp_path))
    out = annotate_inputs(inputs, ann, root, ["square"])
    assert [i for i, _ in out.inputs] == ["y"] and list(out.truth) == ["y"]
    both = annotate_inputs(inputs, ann, root, ["square", "circle"])
    assert [i for i, _ in both.inputs] == ["x", "y"]
    with pytest.raises(ConfigError, match="'dog' is not a category .*its categories: circle, square"):
        annotate_inputs(inputs, ann, root, ["dog"])


def test_mismatched_annotations_are_one_line(tmp_path):
    root = tmp_path / "imgs"
    inputs = _images(root, ["q.png"])
    with pytest.raises(InputError, match="no input image under .* matches a file_name"):
        annotate_inputs(inputs, read_coco(_coco(tmp_path)), root, None)
    wrong_size = _images(tmp_path / "other", ["y.png"], hw=(40, 30))
    with pytest.raises(InputError, match=r"y.png is 30x20 in the json but .* is 30x40"):
        annotate_inputs(wrong_size, read_coco(_coco(tmp_path)), tmp_path / "other", None)


def test_ground_truth_boxes_are_drawn_in_magenta_on_their_pixels(tmp_path):
    ann = read_coco(_coco(tmp_path))
    drawn = draw_ground_truth(np.zeros((20, 30, 3), np.uint8), ann.images["a/x.png"].as_detections())
    magenta = np.all(drawn == GT_COLOUR, axis=-1)
    # box x 1..11, y 2..7 (exclusive): the 2-px outline's outer edge runs along columns 1 and 10, rows 2 and 6
    assert magenta[2, 1] and magenta[6, 10] and magenta[4, 1] and not magenta[4, 5] and not magenta[0, 0]
    assert not magenta[:, 12:].any() and not magenta[8:].any()


def test_a_bad_annotation_file_on_the_command_line_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "ann (1).json"  # an unquoted path with parentheses and a space works
    bad.write_text('{"images": [], "categories": []}')
    proc = subprocess.run(
        [console_script(), f"images.annotations={bad}", f"output.dir={tmp_path / 'out'}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"featvis-run: error: images.annotations={str(bad)!r}: has no 'annotations' list; a COCO json "
        "has 'images', 'annotations' and 'categories'"
    ], proc.stderr
