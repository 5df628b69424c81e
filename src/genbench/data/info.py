"""Dataset facts in one place: image geometry, class count and names, what the images show.

Every layer above asks here (``dataset_info``) instead of carrying its own table, so a report on CIFAR-10 never
says "digits" and ``genbench train vae --study cifar10_vae_dcgan`` builds a 3 x 32 x 32 model.
"""

from __future__ import annotations

from dataclasses import dataclass

from genbench.errors import GenbenchError


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about one dataset.

    Attributes:
        name: registry name (``mnist``, ``fashion_mnist``, ``quickdraw``, ``cifar10``), or a study's own
            dataset's name (:mod:`genbench.data.custom`).
        title: display name (``MNIST``).
        image_shape: (C, H, W) of one image, uint8 0..255 on disk, float [-1, 1] inside genbench.
        num_classes: number of classes (labels 0..num_classes-1).
        class_names: one display name per class.
        content: what one image shows, plural noun phrase ("handwritten digits").
        source: where the images come from (paper or home page).
    """

    name: str
    title: str
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]
    content: str
    source: str


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_INFO = {
    "mnist": DatasetInfo("mnist", "MNIST", (1, 28, 28), 10, tuple(str(i) for i in range(10)), "handwritten digits",
                         "LeCun et al. 1998"),
    "fashion_mnist": DatasetInfo("fashion_mnist", "Fashion-MNIST", (1, 28, 28), 10, FASHION_CLASSES,
                                 "Zalando article photos", "Xiao et al. 2017"),
    "quickdraw": DatasetInfo("quickdraw", "QuickDraw", (1, 28, 28), 0, (), "hand-drawn sketches",
                             "Google Quick, Draw! numpy_bitmap (Ha & Eck 2017)"),
    "cifar10": DatasetInfo("cifar10", "CIFAR-10", (3, 32, 32), 10, CIFAR10_CLASSES, "small colour photos",
                           "Krizhevsky 2009"),
}
DATASET_NAMES = tuple(_INFO)


def dataset_info(name: str | dict, classes: list | tuple | None = None) -> DatasetInfo:
    """The facts of dataset ``name``. QuickDraw's classes are the study's choice (``data.classes``). A mapping
    is a study's own dataset (``{kind: folder | npz, path: ...}``, :mod:`genbench.data.custom`).

    Raises:
        GenbenchError: unknown dataset name; a custom dataset's errors (:func:`genbench.data.custom.custom_info`).
    """
    if isinstance(name, dict):
        from genbench.data.custom import custom_info

        return custom_info(name)
    if name not in _INFO:
        raise GenbenchError(f"unknown dataset {name!r}; choose one of {', '.join(_INFO)}")
    info = _INFO[name]
    if name == "quickdraw" and classes:
        names = tuple(str(c) for c in classes)
        info = DatasetInfo(info.name, info.title, info.image_shape, len(names), names, info.content, info.source)
    return info
