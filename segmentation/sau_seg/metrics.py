"""``IoUMetric`` that also returns the per-class IoU, so ``tools/eval.py``'s JSON holds the whole table."""
import numpy as np
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS


@METRICS.register_module()
class PerClassIoUMetric(IoUMetric):
    """mmseg's ``IoUMetric`` (same aAcc/mIoU/mAcc) plus ``IoU.<class>`` for every class, in percent.

    A class absent from both the ground truth and the predictions has IoU ``nan``, and mmseg's
    ``nanmean`` leaves it out of mIoU; it is reported as ``nan`` here too rather than as a made-up 0.
    """

    def compute_metrics(self, results):
        metrics = super().compute_metrics(results)
        if self.format_only:
            return metrics
        intersect, union = (sum(r) for r in tuple(zip(*results))[:2])
        iou = (intersect / union).numpy()
        for name, value in zip(self.dataset_meta['classes'], iou):
            metrics[f'IoU.{name}'] = float(np.round(value * 100, 2))
        return metrics
