"""Time and peak memory of the zoo's data preparation, checks and loaders, on the full-volume stand-ins.

    python tools/data/make_full_scale.py wmt --scale 0.01 --out /work/data_scale/wmt
    python tools/benchmarks/data.py wmt --raw /work/data_scale/wmt --out /work/data_scale/wmt_out --nproc 1 2
    python tools/benchmarks/data.py cityscapes --root /work/data_scale/cityscapes --nproc 1 2
    python tools/benchmarks/data.py voc --root /work/data_scale/voc/VOCdevkit
    python tools/benchmarks/data.py loaders --voc ... --cityscapes ... --wmt-bin ... [--batches 20]

Each measured step runs as a subprocess of its own; its time is wall-clock (``seconds``) and CPU time of the
whole tree (``cpu_s``, user + system: on a shared machine the basis for per-core throughput); its memory two figures: ``peak RSS``,
the largest single process of its tree (``ru_maxrss`` of ``RUSAGE_CHILDREN`` in a small wrapper process: what
``/usr/bin/time -v`` reports, children included), and ``tree RSS``, the sum over the process tree sampled every 0.1 s (an upper bound: forked
workers share pages). ``--json FILE`` appends one JSON object per measurement. The loaders run each config's own
training pipeline and ``num_workers`` (``--workers`` to override) and report images (or tokens) per second.
"""
import argparse
import itertools
import json
import os
import os.path as osp
import subprocess
import sys
import threading
import time

from tools.zoo import REPO_ROOT
from tools.zoo.errors import InputError, run_main

PY = sys.executable


def _tree_rss(root_pid):
    """Sum of VmRSS (bytes) of ``root_pid`` and its descendants, from /proc."""
    children, rss = {}, {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            with open(f'/proc/{entry}/statm') as f:
                rss[int(entry)] = int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


#: runs the measured command as its child and reports that child tree's rusage: started from a small process,
#: so that ``ru_maxrss`` is not raised by the memory of a large caller (a forked or vforked child's high-water
#: mark before ``exec`` counts in its ``ru_maxrss``)
_WRAPPER = ('import json, os, resource, subprocess, sys\n'
            'rc = subprocess.call(sys.argv[2:])\n'
            'u = resource.getrusage(resource.RUSAGE_CHILDREN)\n'
            'open(sys.argv[1], "w").write(json.dumps([u.ru_maxrss, u.ru_utime + u.ru_stime]))\n'
            'sys.exit(rc)\n')


def measure(cmd, label, log=None, env=None, cwd=REPO_ROOT):
    """Run ``cmd``; {label, seconds, cpu_s, peak_rss_mib, tree_rss_mib, rc}. Its output goes to ``log`` (a path)."""
    import tempfile
    out = open(log, 'a') if log else subprocess.DEVNULL
    with tempfile.NamedTemporaryFile(suffix='.json', delete=False) as f:
        usage_file = f.name
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, '-c', _WRAPPER, usage_file, *map(str, cmd)], stdout=out,
                            stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, **(env or {})})
    peak_tree, done = [0], threading.Event()

    def sample():
        while not done.wait(0.1):
            peak_tree[0] = max(peak_tree[0], _tree_rss(proc.pid))
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    proc.wait()
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    if log:
        out.close()
    try:
        with open(usage_file) as f:
            maxrss_kib, cpu_s = json.load(f)
    finally:
        os.remove(usage_file)
    result = dict(label=label, seconds=round(seconds, 2), cpu_s=round(cpu_s, 2),
                  peak_rss_mib=round(maxrss_kib / 1024, 1), tree_rss_mib=round(peak_tree[0] / 2**20, 1),
                  rc=proc.returncode)
    print(json.dumps(result), flush=True)
    if proc.returncode:
        raise InputError(f'{label} failed (exit {proc.returncode}); see {log}')
    return result


def bench_wmt(args):
    from tools.data.prepare_wmt14_en_de import STAGES
    results = []
    for nproc in args.nproc:
        out = f'{args.out}_n{nproc}'
        for stage in STAGES:
            cmd = [PY, '-m', 'tools.data.prepare_wmt14_en_de', '--out', out, '--raw-dir', args.raw,
                   '--bpe-tokens', args.bpe_tokens, '--nproc', nproc, '--no-download', '--stages', stage]
            r = measure(cmd, f'wmt {stage}', log=out + '.log')
            results.append(dict(r, nproc=nproc, task='wmt'))
    return results


def bench_cityscapes(args):
    results = []
    for nproc in args.nproc:
        cmd = [PY, '-m', 'tools.data.prepare_cityscapes', args.root, '--allow-subset', '--overwrite',
               '--nproc', nproc]
        results.append(dict(measure(cmd, 'prepare_cityscapes', log=args.root + '.prepare.log'), nproc=nproc,
                            task='cityscapes', frames=_count(args.root, '_leftImg8bit.png')))
    code = ('import time; t = time.perf_counter(); from mmseg.utils import register_all_modules; '
            'register_all_modules(); import segmentation.sau_seg; from segmentation.sau_seg.datasets import '
            'CheckedCityscapesDataset as D; t0 = time.perf_counter(); n = 0\n'
            'for split in ("train", "val"):\n'
            f'    d = D(data_root={args.root!r}, data_prefix=dict(img_path="leftImg8bit/" + split, '
            'seg_map_path="gtFine/" + split), pipeline=[]); n += len(d)\n'
            'print("frames", n, "seconds", time.perf_counter() - t0)')
    results.append(dict(measure([PY, '-c', code], 'CheckedCityscapesDataset start-up',
                                log=args.root + '.check.log'), nproc=1, task='cityscapes'))
    return results


def _count(root, suffix):
    return sum(f.endswith(suffix) for _, _, files in os.walk(root) for f in files)


def bench_voc(args):
    cmd = [PY, '-m', 'tools.data.check_voc', args.root]
    return [dict(measure(cmd, 'check_voc (CheckedVOCDataset, all splits)', log=args.root + '.check.log'),
                 nproc=1, task='voc', images=_count(args.root, '.jpg'))]


# --- loaders ------------------------------------------------------------------------------------------------
def _loader_worker(args):
    """In a subprocess: iterate a config's train dataloader; print JSON with images/s."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mmengine.utils import import_modules_from_strings
    torch.set_num_threads(1)
    cfg = Config.fromfile(args.config)
    import_modules_from_strings(cfg.custom_imports['imports'])
    scope = cfg.default_scope
    init_default_scope(scope)
    __import__(scope).utils.register_all_modules() if hasattr(__import__(scope), 'utils') else None
    loader = cfg.train_dataloader
    for ds in _leaf(loader['dataset']):
        ds['data_root'] = args.data_root
    if args.workers is not None:
        loader['num_workers'] = args.workers
    if args.batch_size is not None:  # the per-image rate does not depend on it; a small set needs fewer images
        loader['batch_size'] = args.batch_size
    loader['persistent_workers'] = loader['num_workers'] > 0
    dl = Runner.build_dataloader(loader, seed=0)
    it = iter(dl)
    for _ in range(args.warmup):
        next(it)
    pids = [os.getpid()] + [w.pid for w in getattr(it, '_workers', [])]
    cpu0, start, images = _cpu_seconds(pids), time.perf_counter(), 0
    for _ in range(args.batches):
        batch = next(it)
        images += len(batch['inputs'])
    seconds, cpu = time.perf_counter() - start, _cpu_seconds(pids) - cpu0
    print(json.dumps(dict(images=images, seconds=seconds, images_per_s=images / seconds, cpu_s=cpu,
                          images_per_cpu_s=images / cpu, num_workers=loader['num_workers'],
                          batch_size=loader['batch_size'])))


def _cpu_seconds(pids):
    """User + system CPU seconds of ``pids`` so far, from /proc (the loader's workers run on)."""
    total = 0.0
    for pid in pids:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    return total


def _leaf(ds):
    if 'datasets' in ds:
        for child in ds['datasets']:
            yield from _leaf(child)
    elif 'dataset' in ds:
        yield from _leaf(ds['dataset'])
    else:
        yield ds


def _fairseq_tokens(args):
    """fairseq's training batches of max_tokens over bin/train: target tokens per second of the iterator."""
    from fairseq import tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.options import get_training_parser, parse_args_and_arch
    argv = [args.wmt_bin, '--task', 'translation', '--arch', 'transformer_wmt_en_de', '--max-tokens',
            str(args.max_tokens), '--num-workers', str(args.workers if args.workers is not None else 1),
            '--source-lang', 'en', '--target-lang', 'de']
    cfg = convert_namespace_to_omegaconf(parse_args_and_arch(get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    task.load_dataset('train')
    ds = task.dataset('train')
    start = time.perf_counter()
    itr = task.get_batch_iterator(ds, max_tokens=args.max_tokens, max_positions=(1024, 1024),
                                  num_workers=cfg.dataset.num_workers, seed=1).next_epoch_itr(shuffle=True)
    setup = time.perf_counter() - start
    tokens, batches = 0, 0
    start, cpu0 = time.perf_counter(), time.process_time()
    for batch in itertools.islice(itr, args.wmt_batches or None):
        tokens += int(batch['ntokens'])
        batches += 1
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
    print(json.dumps(dict(tokens=tokens, batches=batches, seconds=seconds, tokens_per_s=tokens / seconds,
                          tokens_per_cpu_s=tokens / cpu,
                          batch_setup_s=setup, num_workers=cfg.dataset.num_workers)))


def bench_loaders(args):
    results = []
    jobs = []
    if args.voc:
        jobs.append(('SSD300 train pipeline', osp.join(REPO_ROOT, 'detection/configs/ssd300_sau.py'), args.voc))
    if args.cityscapes:
        jobs.append(('U-Net train pipeline', osp.join(REPO_ROOT, 'segmentation/configs/unet_sau_cityscapes.py'),
                     args.cityscapes))
    for label, config, root in jobs:
        seg = 'U-Net' in label
        cmd = [PY, '-m', 'tools.benchmarks.data', '_loader', '--config', config, '--data-root', root,
               '--batches', args.seg_batches if seg else args.batches, '--warmup', args.warmup]
        if seg and args.seg_batch_size:
            cmd += ['--batch-size', args.seg_batch_size]
        if args.workers is not None:
            cmd += ['--workers', args.workers]
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=REPO_ROOT,
                              env={**os.environ, 'OMP_NUM_THREADS': '1'})
        if proc.returncode:
            raise InputError(f'{label} failed', details=proc.stderr[-3000:])
        r = dict(json.loads(proc.stdout.strip().splitlines()[-1]), label=label, cores=os.cpu_count())
        print(json.dumps(r), flush=True)
        results.append(r)
    if args.wmt_bin:
        cmd = [PY, '-m', 'tools.benchmarks.data', '_tokens', '--wmt-bin', args.wmt_bin, '--max-tokens',
               args.max_tokens, '--wmt-batches', args.wmt_batches] + \
            (['--workers', args.workers] if args.workers is not None else [])
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=REPO_ROOT)
        if proc.returncode:
            raise InputError('fairseq batches failed', details=proc.stderr[-3000:])
        r = dict(json.loads(proc.stdout.strip().splitlines()[-1]), label='fairseq 4096-token batches')
        print(json.dumps(r), flush=True)
        results.append(r)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='what', required=True)
    p = sub.add_parser('wmt')
    p.add_argument('--raw', required=True)
    p.add_argument('--out', required=True)
    p.add_argument('--bpe-tokens', type=int, default=40000)
    p.add_argument('--nproc', type=int, nargs='+', default=[1, os.cpu_count()])
    p = sub.add_parser('cityscapes')
    p.add_argument('--root', required=True)
    p.add_argument('--nproc', type=int, nargs='+', default=[1, os.cpu_count()])
    p = sub.add_parser('voc')
    p.add_argument('--root', required=True, help='VOCdevkit')
    for name in ('loaders', '_loader', '_tokens'):
        p = sub.add_parser(name)
        p.add_argument('--voc')
        p.add_argument('--cityscapes')
        p.add_argument('--wmt-bin')
        p.add_argument('--config')
        p.add_argument('--data-root')
        p.add_argument('--batches', type=int, default=20)
        p.add_argument('--warmup', type=int, default=3)
        p.add_argument('--workers', type=int, help="override the config's num_workers")
        p.add_argument('--max-tokens', type=int, default=4096)
        p.add_argument('--wmt-batches', type=int, default=0,
                       help="fairseq: batches to time (default 0: the whole epoch)")
        p.add_argument('--batch-size', type=int, help="override the config's batch size")
        p.add_argument('--seg-batches', type=int, default=4, help='U-Net: batches to time (default 4)')
        p.add_argument('--seg-batch-size', type=int, help="U-Net: batch size (the config's 32 by default)")
    for p in sub.choices.values():
        p.add_argument('--json', help='append the measurements here, one JSON object a line')
    args = parser.parse_args(argv)
    if args.what == '_loader':
        _loader_worker(args)
        return 0
    if args.what == '_tokens':
        _fairseq_tokens(args)
        return 0
    results = {'wmt': bench_wmt, 'cityscapes': bench_cityscapes, 'voc': bench_voc,
               'loaders': bench_loaders}[args.what](args)
    if args.json:
        with open(args.json, 'a') as f:
            for r in results:
                f.write(json.dumps(dict(r, when=time.strftime('%Y-%m-%d %H:%M'))) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
