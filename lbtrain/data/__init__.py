"""Host-local numpy batches for the trainer; knows nothing of devices. See `input_pipeline`."""

from lbtrain.data.input_pipeline import DatasetInfo
from lbtrain.data.input_pipeline import eval_batches
from lbtrain.data.input_pipeline import get_dataset_info
from lbtrain.data.input_pipeline import published_dataset_info
from lbtrain.data.input_pipeline import train_batches

__all__ = ['DatasetInfo', 'eval_batches', 'get_dataset_info', 'published_dataset_info',
           'train_batches']
