"""Data sets. Importing this package registers every loader."""

from engine.data import builtin  # noqa: F401  (registers digits, synthetic)
from engine.data.base import DATASETS, DataBundle, DataRequest, register_dataset
from engine.errors import DataError

__all__ = ["DATASETS", "DataBundle", "DataRequest", "load_data", "register_dataset"]


def load_data(request: DataRequest) -> DataBundle:
    """Load (decode or read from cache) the data set a request names."""
    loader = DATASETS.get(request.dataset)
    bundle = loader(request)
    if len(bundle.train_x) == 0 or len(bundle.val_x) == 0:
        raise DataError(f"dataset {request.dataset!r} gave an empty train or validation split; "
                        "lower val_fraction or raise train_size")
    return bundle
