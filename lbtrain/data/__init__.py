"""The data sets: host-local numpy batches, and the same as global device batches for the loop.

See `input_pipeline`.
"""

from lbtrain.data.input_pipeline import DatasetInfo
from lbtrain.data.input_pipeline import eval_batches
from lbtrain.data.input_pipeline import eval_inputs
from lbtrain.data.input_pipeline import get_dataset_info
from lbtrain.data.input_pipeline import published_dataset_info
from lbtrain.data.input_pipeline import train_batches
from lbtrain.data.input_pipeline import train_inputs

__all__ = ['DatasetInfo', 'eval_batches', 'eval_inputs', 'get_dataset_info',
           'published_dataset_info', 'train_batches', 'train_inputs']
