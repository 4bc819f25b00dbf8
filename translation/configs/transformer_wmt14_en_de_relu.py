# The same recipe with fairseq's ReLU: the baseline of the SAU paper's translation table.
_base_ = './transformer_wmt14_en_de_sau.py'
fairseq = dict(train=dict(activation_fn='relu'))
