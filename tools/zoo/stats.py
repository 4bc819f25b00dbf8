"""Paired comparisons over seeds, and the named activation lists (presets) of ``tools/sweep.py --preset``.

A sweep trains every activation with the same seeds 0 .. S-1, so activation A and SAU share each seed's data
order and initialisation draw: the comparison is paired by seed. For one metric, with ``d_s = SAU_s - A_s``,

    mean difference  = mean(d)
    standard error   = std(d, n-1) / sqrt(S)
    paired t-test    = scipy.stats.ttest_rel(SAU, A), two-sided, S-1 degrees of freedom

(a positive difference: SAU is better, as in the paper's Table 8, every metric here being higher-is-better).
The p-value says whether the difference is distinguishable from seed-to-seed noise at the sweep's scale; with
many activations x metrics a few p < 0.05 are expected by chance, so :func:`holm` also gives the Holm-adjusted
p-values over a whole table.
"""
import math

#: the paper's baselines (Tables 5-7) and SAU, in the README's order
PAPER = ('relu', 'swish', 'leaky_relu', 'elu', 'softplus', 'gelu', 'prelu', 'relu6', 'sau')

#: issue 17's ablation: is SAU's gain (if any) the smoothing, the trained slope, or the slope's start at 0.15?
#: SAU and ReLU, the paper's PReLU (one shared slope, init 0.25), SAU without smoothing (``prelu_shared_0.15``),
#: without smoothing or training (``leaky_relu_0.15``), with wider smoothing (n = 2, 20, 200), one alpha per
#: channel, the zero-centred variant and a trained n.
ABLATION = ('sau', 'relu', 'prelu', 'prelu_shared_0.15', 'leaky_relu_0.15', 'sau_n2', 'sau_n20', 'sau_n200',
            'sau_per_channel', 'sau_zero_centred', 'sau_trainable_n')

PRESETS = {'paper': PAPER, 'ablation': ABLATION}


def paired_comparison(base, other):
    """``base`` (SAU) against ``other`` over the same seeds, in the same order: a dict with ``n`` (seeds),
    ``mean_diff`` (mean of base - other), ``se`` (its standard error, n-1), ``t`` and ``p`` (two-sided paired
    t-test, ``scipy.stats.ttest_rel``; None for one seed or when every difference is the same, where the test
    is undefined), ``df`` and ``identical`` (True when the two agree on every seed)."""
    base, other = [float(v) for v in base], [float(v) for v in other]
    if len(base) != len(other) or not base:
        raise ValueError(f'a paired comparison needs the same seeds on both sides: {len(base)} vs {len(other)} '
                         'values')
    diffs = [b - o for b, o in zip(base, other)]
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return dict(n=n, mean_diff=mean, se=None, t=None, p=None, df=0, identical=diffs[0] == 0)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    se = sd / math.sqrt(n)
    t = p = None
    if sd > 0:
        from scipy import stats
        result = stats.ttest_rel(base, other)
        t, p = float(result.statistic), float(result.pvalue)
    return dict(n=n, mean_diff=mean, se=se, t=t, p=p, df=n - 1, identical=all(d == 0 for d in diffs))


def holm(p_values):
    """Holm-Bonferroni adjusted p-values (same order; None stays None): the family-wise error over all the
    tests of a table is at most the level at which an adjusted p is read."""
    known = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(known)
    adjusted = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def resolve_preset(name):
    """The activations of a preset, or a ValueError that lists the presets."""
    try:
        return list(PRESETS[name])
    except KeyError:
        raise ValueError(f'unknown preset {name!r}; choose one of: {", ".join(PRESETS)}') from None


def paired_summary(runs, acts, seeds, metrics, scale=1.0, base='sau'):
    """``{A: {column: paired_comparison(...) + p_holm}}`` for every activation A of ``acts`` but ``base``, from a
    sweep's raw ``runs[act][seed][key]`` (``metrics``: column -> key; values x ``scale``, as the tables show
    them); Holm's correction runs over every (A, column) test of the table. Empty without ``base``."""
    if base not in acts:
        return {}
    summary = {}
    for act in acts:
        if act == base:
            continue
        summary[act] = {}
        for column, key in metrics.items():
            summary[act][column] = paired_comparison([scale * float(runs[base][s][key]) for s in seeds],
                                                     [scale * float(runs[act][s][key]) for s in seeds])
    tests = [(act, column) for act in summary for column in summary[act]]
    for (act, column), p in zip(tests, holm([summary[a][c]['p'] for a, c in tests])):
        summary[act][column]['p_holm'] = p
    return summary


def format_p(p):
    return 'n/a' if p is None else f'{p:.3f}' if p >= 0.001 else f'{p:.1e}'


def paired_cell(c):
    """``+1.23 +/- 0.45, p 0.052`` (``*`` p < 0.05, ``**`` also after Holm), for one comparison."""
    if c['identical']:
        return '0 (identical on every seed)'
    if c['se'] is None:
        return f'{c["mean_diff"]:+.2f} (1 seed: no test)'
    stars = '' if c['p'] is None or c['p'] >= 0.05 else ' **' if (c.get('p_holm') or 1) < 0.05 else ' *'
    return f'{c["mean_diff"]:+.2f} +/- {c["se"]:.2f}, p {format_p(c["p"])}{stars}'


def paired_markdown(summary, seeds, base='sau'):
    """The paired table for results.md: one row per activation, one cell per metric (:func:`paired_cell`)."""
    if not summary:
        return [f'No paired comparison: `{base}` is not among the activations.']
    columns = list(next(iter(summary.values())))
    tests = sum(c['p'] is not None for cells in summary.values() for c in cells.values())
    n = len(seeds)
    lines = [f'Paired comparison against SAU over the {n} seed(s), seed by seed (d = SAU - A on the same seed; '
             f'positive: SAU is better): mean d +/- its standard error (std of d / sqrt({n})), and p of the '
             f'two-sided paired t-test (scipy.stats.ttest_rel, {n - 1} degrees of freedom). `*`: p < 0.05; '
             f'`**`: also below 0.05 after Holm\'s correction over the table\'s {tests} tests. Without a star '
             'the difference is not distinguishable from seed-to-seed noise at this scale.', '',
             '| d = SAU - A | ' + ' | '.join(columns) + ' |', '|---|' + '---:|' * len(columns)]
    for act, cells in summary.items():
        lines.append(f'| {base} - {act} | ' + ' | '.join(paired_cell(cells[c]) for c in columns) + ' |')
    return lines
