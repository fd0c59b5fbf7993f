"""Data sets. Importing this package registers every loader."""

from engine.data import builtin, cifar, imagefolder  # noqa: F401  (register the loaders)
from engine.data.base import (
    DATASETS,
    PREPARERS,
    DataBundle,
    DataConfig,
    Progress,
    make_bundle,
    register_dataset,
)
from engine.data.source import resolve_data_source
from engine.errors import DataError

__all__ = ["DATASETS", "DataBundle", "DataConfig", "load_data", "make_bundle", "prepare_data",
           "register_dataset", "resolve_data_source"]


def prepare_data(request: DataConfig, progress: Progress | None = None) -> None:
    """Make the request's source available without decoding it: download it, or check that
    it is there. Cheap once done; run it before writing anything, so that a missing or
    unreachable source stops a run with nothing left behind.

    Args:
        request: The data a run will load.
        progress: Receives a line before anything slow (a download).

    Raises:
        ConfigError: the data set name is not registered.
        DataError: the source is missing, unreachable or laid out wrongly.
    """
    DATASETS.get(request.dataset)  # an unknown name is a ConfigError listing the known ones
    prepare = PREPARERS.get(request.dataset)
    if prepare is not None:
        prepare(request, progress or (lambda line: None))


def load_data(request: DataConfig) -> DataBundle:
    """Load (decode or read from cache) the data set a request names.

    Raises:
        ConfigError: the data set name is not registered.
        DataError: the source is missing or corrupt, or a split comes out empty.
    """
    loader = DATASETS.get(request.dataset)
    bundle = loader(request)
    if len(bundle.train_x) == 0 or len(bundle.val_x) == 0:
        raise DataError(f"dataset {request.dataset!r} gave an empty train or validation split; "
                        "lower val_fraction or raise train_size")
    return bundle
