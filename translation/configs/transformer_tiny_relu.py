# The tiny demo model with fairseq's ReLU.
_base_ = './transformer_tiny_sau.py'
fairseq = dict(train=dict(activation_fn='relu'))
