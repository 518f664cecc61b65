"""Real-image data sets for judging a training recipe, built from images that registry packages ship
(nothing drawn by ``foodpipe synth``, nothing downloaded), in the Food-101 layout, and a classic
baseline on the same split.

- ``digits``: scikit-learn's 1,797 handwritten digits (real scans, 8x8, 17 grey levels), each
  upscaled to a random size (longer side 64-128 px) and aspect ratio (1:2 to 2:1), so the object
  fills frames of every shape: what a centre crop would cut.
- ``photos``: patches (96-192 px, aspect 3:4 to 4:3) cut at random from ten of scikit-image's sample
  photographs (two of them greyscale), one class per photograph.
- ``photo-subjects``: the same photographs, patches named by the cell of the photograph they come
  from (the subject): split by subject, test patches show regions no train patch shows.
- ``glyphs``: ten letters in the 22 text fonts that matplotlib ships (DejaVu, STIX, Computer
  Modern), in random colours, sizes, places and slants, named by font (the subject): split by
  subject, the test fonts are fonts no train image was drawn in.

Subject sets are split with ``foodpipe preprocess --group-pattern`` (``SUBJECT_PATTERNS``).

    python -m tests.realdata digits OUT [--seed S]     # then foodpipe preprocess / train / evaluate
    python -m tests.realdata photo-subjects OUT        # preprocess with --group-pattern '^(.+)__'
    python -m tests.realdata glyphs OUT                # preprocess with --group-pattern '/(.+)__'
    python -m tests.realdata baseline DATASET          # an RBF SVM on the preprocessed split
    python -m tests.realdata plain-cnn DATASET [--seed S]   # a small plain CNN on the same split
"""

import argparse
import io
import json
import os

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina", "hubble_deep_field", "immunohistochemistry",
          "motorcycle", "camera", "moon")  # camera and moon are greyscale


def _write(root: str, class_name: str, index: int | str, image: Image.Image) -> None:
    folder = os.path.join(root, "images", class_name)
    os.makedirs(folder, exist_ok=True)
    image.save(os.path.join(folder, f"{index:05d}.jpg" if isinstance(index, int) else f"{index}.jpg"), quality=92)


def _photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)())


def _random_shape(rng, low: int, high: int, aspect: float) -> tuple[int, int]:
    """``(width, height)``: the longer side in [low, high], the aspect ratio in [1/aspect, aspect]."""
    longer = int(rng.integers(low, high + 1))
    ratio = float(np.exp(rng.uniform(-np.log(aspect), np.log(aspect))))
    shorter = max(8, int(round(longer / max(ratio, 1 / ratio))))
    return (longer, shorter) if ratio >= 1 else (shorter, longer)


def write_digits(root: str, seed: int = 0) -> int:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        grey = Image.fromarray((pixels * (255 / 16)).astype(np.uint8), "L")
        image = grey.resize(_random_shape(rng, 64, 128, 2.0), Image.BILINEAR)
        _write(root, f"digit_{label}", index, image.convert("RGB"))
    return len(digits.images)


def write_photos(root: str, per_class: int = 150, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    for name in PHOTOS:
        photo = _photo(name)
        for index in range(per_class):
            width, height = _random_shape(rng, 96, 192, 4 / 3)
            scale = rng.uniform(1.0, min(photo.size[0] / width, photo.size[1] / height, 2.0))
            box_w, box_h = int(width * scale), int(height * scale)
            x, y = int(rng.integers(0, photo.size[0] - box_w + 1)), int(rng.integers(0, photo.size[1] - box_h + 1))
            _write(root, name, index, photo.crop((x, y, x + box_w, y + box_h)).resize((width, height), Image.BILINEAR))
    return per_class * len(PHOTOS)


def write_photo_subjects(root: str, photos=PHOTOS, grid: int = 4, per_subject: int = 8, seed: int = 0) -> int:
    """Patches of scikit-image's photographs, one class per photograph, by subject: a subject is one
    cell of a ``grid`` x ``grid`` division of the photograph, and its patches (48-96 px) are cut
    inside it, named ``<class>/c<row><col>__<n>``. Patches of one cell overlap, those of different
    cells never do: a split by subject (``--group-pattern '^(.+)__'``) tests on regions of the
    photograph that no training image shows."""
    rng = np.random.default_rng(seed)
    for name in photos:
        photo = _photo(name)
        cell_w, cell_h = photo.size[0] // grid, photo.size[1] // grid
        for row in range(grid):
            for col in range(grid):
                for index in range(per_subject):
                    width, height = _random_shape(rng, 48, min(96, cell_w, cell_h), 4 / 3)
                    x = col * cell_w + int(rng.integers(0, cell_w - width + 1))
                    y = row * cell_h + int(rng.integers(0, cell_h - height + 1))
                    _write(root, name, f"c{row}{col}__{index}", photo.crop((x, y, x + width, y + height)))
    return len(photos) * grid * grid * per_subject


LETTERS = "abegkmrsty"  # no two are mirror images of each other
# matplotlib's fonts with Latin letters at their code points (not the symbol, display-only or
# fallback faces): 12 DejaVu, 4 STIX, 6 Computer Modern.
GLYPH_FONTS = tuple(f"DejaVu{family}{style}.ttf" for family, styles in (
    ("Sans", ("", "-Bold", "-Oblique", "-BoldOblique")), ("SansMono", ("", "-Bold", "-Oblique", "-BoldOblique")),
    ("Serif", ("", "-Bold", "-Italic", "-BoldItalic"))) for style in styles) + (
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmti10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmmi10.ttf")
# The subject in an image id: the class-qualified cell for photo-subjects; the font alone for
# glyphs, so a font's letters are one group across all classes and the whole font is held out.
SUBJECT_PATTERNS = {"photo-subjects": "^(.+)__", "glyphs": "/(.+)__"}


def _font_path(name: str) -> str:
    import matplotlib

    return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", name)


def _contrasting_colours(rng) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A background and an ink colour whose luminances differ by at least 90 levels."""
    while True:
        background, ink = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(2))
        if abs(np.dot(background, (0.299, 0.587, 0.114)) - np.dot(ink, (0.299, 0.587, 0.114))) >= 90:
            return background, ink


def write_glyphs(root: str, fonts=GLYPH_FONTS, letters=LETTERS, per_subject: int = 8, seed: int = 0) -> int:
    """``letters`` drawn in each of ``fonts`` (the subjects), ``per_subject`` images per letter and
    font, named ``<letter>/<font>__<n>``: a 48-96 px canvas of a random colour, the letter in a
    contrasting one, 45-80% of the canvas high, anywhere on it, turned up to 15 degrees. Colour says
    nothing of the class; the letter's shape in an unseen font does."""
    from PIL import ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    for font_name in fonts:
        subject = os.path.splitext(font_name)[0]
        for letter in letters:
            for index in range(per_subject):
                side = int(rng.integers(48, 97))
                font = ImageFont.truetype(_font_path(font_name), max(8, int(side * rng.uniform(0.45, 0.8))))
                background, ink = _contrasting_colours(rng)
                left, top, right, bottom = font.getbbox(letter)
                glyph = Image.new("L", (right - left + 4, bottom - top + 4), 0)
                ImageDraw.Draw(glyph).text((2 - left, 2 - top), letter, fill=255, font=font)
                glyph = glyph.rotate(float(rng.uniform(-15, 15)), Image.BILINEAR, expand=True)
                canvas = Image.new("RGB", (side, side), background)
                x = int(rng.integers(0, max(1, side - glyph.size[0]) + 1))
                y = int(rng.integers(0, max(1, side - glyph.size[1]) + 1))
                canvas.paste(Image.new("RGB", glyph.size, ink), (x, y), glyph)
                _write(root, letter, f"{subject}__{index}", canvas)
    return len(fonts) * len(letters) * per_subject


def features(encoded: bytes, side: int = 16) -> np.ndarray:
    """Whole image resized to ``side`` px, plus an 8-bin histogram per channel."""
    image = Image.open(io.BytesIO(encoded)).convert("RGB")
    small = np.asarray(image.resize((side, side), Image.BILINEAR), np.float32).ravel() / 255
    histogram = np.concatenate([np.histogram(np.asarray(image)[..., c], 8, (0, 256))[0] for c in range(3)])
    return np.concatenate([small, histogram / histogram.sum() * 3])


SVM_C = (0.1, 1.0, 10.0, 100.0)


def svm_baseline(dataset: str) -> dict:
    """An RBF SVM on :func:`features`, fitted on the train split with each C of ``SVM_C``; the C with
    the best val accuracy is kept (as the recipe keeps its best epoch on val) and scored on test."""
    import tensorflow as tf
    from sklearn.svm import SVC

    from foodpipe import datasets
    from tfdata import pipeline

    dataset = datasets.load(dataset)  # read once
    splits = {}
    for split in ("train", "val", "test"):
        rows = [pipeline.parse(record) for record in tf.data.TFRecordDataset(
            pipeline.shard_paths(dataset, split))]
        splits[split] = (np.stack([features(encoded.numpy()) for encoded, _ in rows]),
                         np.array([int(label) for _, label in rows]))
    fitted = {c: SVC(C=c, gamma="scale").fit(*splits["train"]) for c in SVM_C}
    val = {c: svm.score(*splits["val"]) for c, svm in fitted.items()}
    chosen = max(SVM_C, key=val.get)  # the smallest C among equals
    return {"C": chosen, "val_accuracy": float(val[chosen]), "test_accuracy": float(fitted[chosen].score(*splits["test"]))}


def read_split(dataset: str, split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 images, labels)`` of a split, each image as evaluation frames it (squash)."""
    import tensorflow as tf

    from tfdata import pipeline

    images, labels = [], []
    for record in tf.data.TFRecordDataset(pipeline.shard_paths(dataset, split)):
        encoded, label = pipeline.parse(record)
        images.append(pipeline.preprocess_eval_image(encoded, image_size, "squash", 1.0).numpy())
        labels.append(int(label))
    return np.stack(images), np.array(labels)


def plain_cnn_baseline(dataset: str, seed: int = 0, image_size: int = 64, epochs: int = 30) -> dict:
    """A small plain CNN, what a Keras tutorial writes: three conv/max-pool stages (32, 64, 128
    filters), global average pooling, softmax; Adam at Keras' default rate, no augmentation, inputs
    scaled to [0, 1]. Trained on the train split, its best epoch on val kept and scored on test."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    splits = {split: read_split(dataset, split, image_size) for split in ("train", "val", "test")}
    classes = int(max(labels.max() for _, labels in splits.values())) + 1
    model = keras.Sequential([keras.Input((image_size, image_size, 3)), layers.Rescaling(1 / 255)] + [
        layer for filters in (32, 64, 128)
        for layer in (layers.Conv2D(filters, 3, padding="same", activation="relu"), layers.MaxPooling2D())] + [
        layers.GlobalAveragePooling2D(), layers.Dense(classes, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    best = keras.callbacks.ModelCheckpoint(os.path.join(_scratch(), "best.weights.h5"), monitor="val_accuracy",
                                           save_best_only=True, save_weights_only=True)
    history = model.fit(*splits["train"], batch_size=64, epochs=epochs, validation_data=splits["val"],
                        callbacks=[best], verbose=0)
    model.load_weights(best.filepath)
    _, test_accuracy = model.evaluate(*splits["test"], verbose=0)
    return {"seed": seed, "val_accuracy": float(max(history.history["val_accuracy"])),
            "test_accuracy": float(test_accuracy)}


def _scratch() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="plain-cnn-")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.realdata", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["digits", "photos", "photo-subjects", "glyphs", "baseline", "plain-cnn"])
    parser.add_argument("path", help="output folder (the sets) or preprocessed dataset (the baselines)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.what == "baseline":
        print(json.dumps(svm_baseline(args.path)))
    elif args.what == "plain-cnn":
        print(json.dumps(plain_cnn_baseline(args.path, seed=args.seed)))
    else:
        writers = {"digits": write_digits, "photos": write_photos, "photo-subjects": write_photo_subjects,
                   "glyphs": write_glyphs}
        count = writers[args.what](args.path, seed=args.seed)
        print(json.dumps({"images": count, "path": args.path}))


if __name__ == "__main__":
    main()
