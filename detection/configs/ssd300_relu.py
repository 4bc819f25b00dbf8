_base_ = ['./_base_/models/ssd300_vgg16bn.py', './_base_/datasets/voc0712_ssd300.py',
          './_base_/schedules/sgd_120k.py', './_base_/default_runtime.py']
# The paper's other baselines are one flag away: tools/train.py CONFIG --act swish (see README).
