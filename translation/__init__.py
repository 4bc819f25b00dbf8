"""The SAU zoo's fairseq ``--user-dir``: importing it adds ``--activation-fn sau`` (and swish,
leaky_relu, elu, softplus, prelu, relu6) to fairseq; see ``sau_core/fairseq.py``.

Loading a zoo checkpoint with fairseq's own hub interface. fairseq 0.12.2 does not import the ``common.user_dir``
a checkpoint records (``checkpoint_utils.load_model_ensemble_and_task`` builds the model from the stored config
as it is), so the activations must be registered before the model is built; importing this package does that,
and then no ``user_dir`` is needed (the repository root is on the zoo venv's path)::

    import translation  # registers SAU with fairseq
    from fairseq.models.transformer import TransformerModel
    hub = TransformerModel.from_pretrained('checkpoints', 'transformer_tiny_sau_20261123-5a6d6c73.pth',
                                           'data/tiny_en_de/bin', tokenizer='moses', bpe='subword_nmt',
                                           bpe_codes='data/tiny_en_de/bpe/code')
    hub.translate(['The cow has not read the car.'], beam=4, lenpen=0.6)

or ``translation.from_pretrained(checkpoint, data)``, which passes ``user_dir`` and the Moses/BPE settings of the
zoo's data preparation. fairseq's command-line tools import plugins from ``--user-dir`` only; give them
``--user-dir <this folder>`` (:data:`USER_DIR`), e.g.::

    fairseq-interactive data/tiny_en_de/bin --path checkpoints/transformer_tiny_sau_20261123-5a6d6c73.pth \\
        --user-dir translation --source-lang en --target-lang de --tokenizer moses --bpe subword_nmt \\
        --bpe-codes data/tiny_en_de/bpe/code --beam 4 --lenpen 0.6
"""
import os.path as osp

from sau_core import fairseq as _sau_fairseq  # noqa: F401  (registers on import)

#: this folder: the ``--user-dir`` (``user_dir=``) of the zoo's translation models, as an absolute path
USER_DIR = osp.dirname(osp.abspath(__file__))


def bpe_codes_of(data):
    """The BPE codes beside a binarized data folder, where ``tools/data/prepare_wmt14_en_de.py`` writes them
    (``<out>/bin`` and ``<out>/bpe/code``)."""
    return osp.join(osp.dirname(osp.abspath(data)), 'bpe', 'code')


def from_pretrained(checkpoint, data, bpe_codes=None, trust=False, **kwargs):
    """fairseq's ``TransformerModel.from_pretrained`` for a zoo checkpoint: a ``GeneratorHubInterface``.

    ``data`` is the binarized data folder the model was trained on (its ``dict.*.txt``), ``bpe_codes`` defaults
    to :func:`bpe_codes_of` ``(data)``; Moses tokenisation (fairseq's ``moses`` tokenizer, as the data was
    tokenised) and subword-nmt BPE are set, ``user_dir`` is :data:`USER_DIR`. ``kwargs`` go to fairseq as
    they are (``source_lang``, ``target_lang``, generation defaults, ...). The checkpoint loads with
    ``weights_only=True`` (``tools.zoo.io.checkpoint_loading``) unless ``trust`` (a local file you vouch for).
    """
    from fairseq.models.transformer import TransformerModel

    from tools.zoo.io import checkpoint_loading
    options = dict(user_dir=USER_DIR, tokenizer='moses', bpe='subword_nmt',
                   bpe_codes=bpe_codes or bpe_codes_of(data))
    options.update(kwargs)
    checkpoint = osp.abspath(checkpoint)
    with checkpoint_loading(trust):
        return TransformerModel.from_pretrained(osp.dirname(checkpoint), checkpoint_file=osp.basename(checkpoint),
                                                data_name_or_path=osp.abspath(data), **options)
