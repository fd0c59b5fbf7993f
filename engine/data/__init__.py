"""Data sets. Importing this package registers every loader."""

from engine.data import builtin, cifar, imagefolder  # noqa: F401  (register the loaders)
from engine.data.base import DATASETS, DataBundle, DataConfig, make_bundle, register_dataset
from engine.errors import DataError

__all__ = ["DATASETS", "DataBundle", "DataConfig", "load_data", "make_bundle", "register_dataset"]


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
