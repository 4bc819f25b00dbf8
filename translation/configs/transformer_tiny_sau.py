# A 2+2-layer, d_model 128 Transformer on the tiny synthetic En->De corpus: the demo and the tests,
# minutes on a CPU (not a paper result). The corpus:
#   python tools/data/make_tiny_en_de.py data/tiny_en_de/raw
#   python tools/data/prepare_wmt14_en_de.py --out data/tiny_en_de --raw-dir data/tiny_en_de/raw --bpe-tokens 500
_base_ = './transformer_wmt14_en_de_sau.py'
fairseq = dict(
    data='data/tiny_en_de/bin',
    ref='data/tiny_en_de/ref/test.de',
    torch_threads=1,  # these matrices are small: one thread beats two (5x on 2 busy cores, measured)
    train=dict(
        arch='transformer',  # sizes below; everything else as the WMT14 recipe
        encoder_layers=2, decoder_layers=2, encoder_embed_dim=128, decoder_embed_dim=128,
        encoder_ffn_embed_dim=256, decoder_ffn_embed_dim=256,
        encoder_attention_heads=4, decoder_attention_heads=4,
        lr=3e-3, warmup_updates=60, max_tokens=2048, update_freq=1, max_update=300,
        save_interval_updates=0, keep_interval_updates=-1, log_interval=50, num_workers=0,
    ),
    generate=dict(gen_subset='test', beam=4, lenpen=0.6, max_tokens=4000),
)
