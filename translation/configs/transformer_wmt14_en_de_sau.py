# Transformer base (Vaswani et al. 2017) on WMT14 English->German with SAU in every feed-forward
# layer (one trainable alpha per layer), the SAU paper's recipe, run by fairseq itself:
#   python tools/train.py translation/configs/transformer_wmt14_en_de_sau.py
#   python tools/eval.py translation/configs/transformer_wmt14_en_de_sau.py work_dirs/.../checkpoint_last.pt
# `train` and `generate` hold fairseq-train / fairseq-generate options by name (translation/runner.py
# turns adam_betas='(0.9, 0.98)' into --adam-betas '(0.9, 0.98)'; True is a bare flag).
fairseq = dict(
    data='data/wmt14_en_de/bin',  # tools/data/prepare_wmt14_en_de.py --out data/wmt14_en_de (40k joint BPE)
    ref='data/wmt14_en_de/ref/test.de',  # newstest2014 reference, untouched, for sacreBLEU
    torch_threads=None,  # torch's default
    train=dict(
        task='translation', source_lang='en', target_lang='de',
        arch='transformer_wmt_en_de',  # base: 6+6 layers, d_model 512, FFN 2048, 8 heads, post-norm
        activation_fn='sau',  # --act relu (or swish, leaky_relu, elu, softplus, gelu, prelu, relu6)
        share_all_embeddings=True,  # one joint BPE dictionary, as fairseq's WMT14 En-De recipe
        dropout=0.1,  # the paper and Vaswani et al. (base)
        attention_dropout=0.0, activation_dropout=0.0,  # fairseq's defaults for the base model
        optimizer='adam', adam_betas='(0.9, 0.98)', adam_eps=1e-8,  # eps: fairseq's scaling_nmt value
        weight_decay=0.0, clip_norm=0.0,  # none, as scaling_nmt
        lr=7e-4, lr_scheduler='inverse_sqrt', warmup_updates=4000, warmup_init_lr=1e-7,
        # = Vaswani's d^-0.5 * min(step^-0.5, step * 4000^-1.5), whose peak is 512^-0.5 * 4000^-0.5 = 7e-4
        criterion='label_smoothed_cross_entropy', label_smoothing=0.1,
        max_tokens=4096, update_freq=8,  # ~25k source + 25k target tokens per update, as Vaswani's
        # 8 GPUs x 4096 tokens; on 8 GPUs use update_freq=1 (--cfg-options fairseq.train.update_freq=1)
        max_update=100000,  # the paper
        save_interval_updates=5000, keep_interval_updates=5,  # last 5 kept (for checkpoint averaging)
        no_epoch_checkpoints=True,
        seed=1,
        log_format='simple', log_interval=100,
        num_workers=1,
    ),
    generate=dict(
        gen_subset='test',  # newstest2014
        beam=4, lenpen=0.6,  # Vaswani et al. and fairseq's scaling_nmt
        remove_bpe=True,
        max_tokens=8000,
    ),
)
