"""Kernels called concurrently: Python threads, concurrent.futures, and processes after fork.

Every kernel releases the GIL while it runs, so Python threads really do run kernels at the same
time, each possibly with its own OpenMP team; the results must be those of a serial call, bit
for bit. After ``fork`` GNU libgomp cannot start the teams of the forking thread again (its
worker threads are gone and the next parallel region waits for them forever); fastloss detects
that thread and runs its kernels on one thread there (``fastloss._core.threads_lost_to_fork``).
The fork tests run in a child interpreter with a timeout, so a hang fails the test instead of
hanging the suite. Generic over every registered loss (inputs from ``tests/_generic.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import fastloss

from _generic import NAMES, arrays_of, numpy_call, same_result, weights_of

ROOT = Path(__file__).resolve().parent.parent


def _calls(loss, arrays, w, n_threads):
    """The fused calls (every kernel output at once) of every reduction."""
    out = {}
    for r in loss.reductions:
        out[r] = loss.loss_gradient(*arrays, sample_weight=w, reduction=r, n_threads=n_threads)
    if loss.has_hessian:
        out["gh"] = loss.gradient_hessian(*arrays, sample_weight=w, n_threads=n_threads)
    return out


def _jobs(work=140_000, seed=0):
    """One job per (loss, form): the loss, its arrays and weights, large enough for 2 threads."""
    rng = np.random.default_rng(seed)
    jobs = []
    for name in NAMES:
        loss = fastloss.get(name)
        for k in range(len(loss.input_forms())):
            call = numpy_call(loss, k, rng, work=work)
            jobs.append((loss, arrays_of(call), weights_of(call)))
    return jobs


def _reference(jobs):
    return [_calls(loss, arrays, w, n_threads=1) for loss, arrays, w in jobs]


def test_many_python_threads_at_once():
    """8 Python threads, started together, each running every loss (in its own order) with 1 or
    2 OpenMP threads, on two sets of inputs: every result equals the serial one."""
    per_thread = [_jobs(seed=s) for s in range(2)]
    expected = [_reference(jobs) for jobs in per_thread]
    barrier = threading.Barrier(8)
    failures = []

    def worker(t):
        jobs, ref = per_thread[t % 2], expected[t % 2]
        barrier.wait()
        for k in range(len(jobs)):
            (loss, arrays, w), want = jobs[(k + t) % len(jobs)], ref[(k + t) % len(jobs)]
            got = _calls(loss, arrays, w, n_threads=1 + (t // 2) % 2)
            for key in want:
                if not same_result(got[key], want[key]):
                    failures.append((t, repr(loss), key))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not failures, failures[:5]


@pytest.mark.parametrize("name", NAMES)
def test_the_gil_is_released_while_a_kernel_runs(name):
    """Another Python thread runs while a kernel does, without any timing assumption.

    With the interpreter's switch interval at 100 s, the main thread keeps the GIL until it
    releases it itself; a waiting thread that needs the GIL for one statement therefore runs
    during a call only if the call releases the GIL. (If it did not, the thread could not run
    before the assertion, which does not release it either.)
    """
    loss = fastloss.get(name)
    call = numpy_call(loss, 0, np.random.default_rng(1), work=2_000_000)
    arrays, w = arrays_of(call), weights_of(call)
    go, ran = threading.Event(), threading.Event()

    def other():
        go.wait()
        ran.set()           # needs the GIL

    old = sys.getswitchinterval()
    t = threading.Thread(target=other)
    t.start()
    sys.setswitchinterval(100.0)
    try:
        go.set()
        for _ in range(5):
            loss.loss_gradient(*arrays, sample_weight=w, reduction=loss.reductions[-1],
                               n_threads=1)
            if ran.is_set():
                break
        released = ran.is_set()
    finally:
        sys.setswitchinterval(old)
        t.join()
    assert released, f"{name}: no other Python thread could run during 5 kernel calls"


def test_thread_pool_executor():
    """Kernels submitted to a ThreadPoolExecutor return the serial results."""
    jobs = _jobs(seed=7)
    ref = _reference(jobs)
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(lambda job: _calls(job[0], job[1], job[2], n_threads=2),
                            jobs * 2))
    for k, res in enumerate(got):
        want = ref[k % len(jobs)]
        for key in want:
            assert same_result(res[key], want[key]), (repr(jobs[k % len(jobs)][0]), key)


def test_default_thread_count_from_many_threads():
    """set_num_threads is a process-wide default read by every thread."""
    jobs = _jobs(work=140_000, seed=3)[:3]
    ref = _reference(jobs)
    fastloss.set_num_threads(2)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            got = list(pool.map(lambda job: _calls(job[0], job[1], job[2], None), jobs * 4))
    finally:
        fastloss.set_num_threads(None)
    for k, res in enumerate(got):
        for key, want in ref[k % len(jobs)].items():
            assert same_result(res[key], want), key


# ---------------------------------------------------------------------------------------------
# How many threads a call gets (_blocks.pxd): by element count for large calls, and below that
# by the measured time of the call's first block
# ---------------------------------------------------------------------------------------------

_TWO_THREADS = pytest.mark.skipif(
    not fastloss._core.build_info()["openmp"] or fastloss._core.omp_max_threads() < 2
    or (os.cpu_count() or 1) < 2, reason="needs an OpenMP build and two CPUs")


@_TWO_THREADS
def test_thread_count_follows_the_work():
    """Calls below the element-count rule (2 x 65,536 elements) take a second thread when
    their first block's time says the rest is worth it: log-cosh (about 8 ns per element)
    at 1e5 elements, softmax cross-entropy at 3,000 rows of 10. One block or two (nothing to
    share after the first) run on one thread, as does ``n_threads=1``; large calls take every
    thread allowed without timing. The estimated rests are 4x (softmax, about 115 us) to 30x
    (log-cosh) the 24 us that two threads need, so a slow or loaded machine does not change
    these counts (it only makes threads likelier)."""
    core = fastloss._core
    rng = np.random.default_rng(5)

    def threads(loss, *arrays, n_threads=2):
        loss.loss_gradient_hessian(*arrays, n_threads=n_threads)
        return core.last_threads()

    y, p = rng.standard_normal(100_000), rng.standard_normal(100_000)
    assert threads(fastloss.LogCosh(), y, p) == 2
    assert threads(fastloss.LogCosh(), y.astype(np.float32), p.astype(np.float32)) == 2
    assert threads(fastloss.LogCosh(), y, p, n_threads=1) == 1
    assert threads(fastloss.LogCosh(), y[:16_000], p[:16_000]) == 1     # two blocks
    assert threads(fastloss.MSE(), y[:5000], p[:5000]) == 1             # one block
    big = rng.standard_normal(300_000)
    assert threads(fastloss.MSE(), big, big[::-1].copy()) == 2          # the count rule
    ce = fastloss.CategoricalCrossEntropy(from_logits=True)
    z, labels = rng.standard_normal((3000, 10)), rng.integers(0, 10, 3000)
    assert threads(ce, labels, z) == 2
    assert threads(ce, labels[:100], z[:100]) == 1


@_TWO_THREADS
def test_timed_thread_choice_gives_identical_bits():
    """Every loss at a size where the thread count is chosen by timing (the first block runs
    alone, the rest in parallel): bitwise the results of one thread, every reduction."""
    jobs = _jobs(work=60_000, seed=11)
    ref = _reference(jobs)
    for (loss, arrays, w), want in zip(jobs, ref):
        got = _calls(loss, arrays, w, n_threads=2)
        for key in want:
            assert same_result(got[key], want[key]), (repr(loss), key)


@_TWO_THREADS
def test_timed_thread_choice_redoes_float32_in_float64():
    """A float32-arithmetic call whose output overflows float32 is redone in float64 from its
    first block again (REDO64), also when that block ran alone, timed: the same bits as one
    thread, and the float64 value of the mean."""
    rng = np.random.default_rng(12)
    y = rng.standard_normal(100_000).astype(np.float32)
    p = rng.standard_normal(100_000).astype(np.float32)
    p[70_000] = 3e19            # (p - y)^2 = 9e38 overflows float32; the mean does not
    loss = fastloss.Huber(delta=1e20)       # a quadratic loss of float32 arithmetic
    one = loss.loss_gradient_hessian(y, p, n_threads=1)
    two = loss.loss_gradient_hessian(y, p, n_threads=2)
    for a, b in zip(one, two):
        assert np.array_equal(a, b)
    d = p.astype(np.float64) - y
    assert np.isfinite(one[0])
    assert float(one[0]) == pytest.approx(np.mean(np.where(np.abs(d) <= 1e20, 0.5 * d * d,
                                                            0.0)), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Processes: fork after OpenMP, spawn, forkserver
# ---------------------------------------------------------------------------------------------

_CHILD_SCRIPT = textwrap.dedent('''
    import os, sys, threading
    sys.path.insert(0, {tests!r})
    import numpy as np
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    import fastloss
    from fastloss import _core
    from _generic import NAMES, numpy_call, arrays_of, weights_of, same_result

    def jobs():
        rng = np.random.default_rng(11)
        out = []
        for name in NAMES:
            loss = fastloss.get(name)
            call = numpy_call(loss, 0, rng, work=140_000)
            out.append((loss, arrays_of(call), weights_of(call)))
        return out

    JOBS = jobs()

    def fused(loss, arrays, w, n_threads):
        r = loss.reductions[-1]
        out = {{r: loss.loss_gradient(*arrays, sample_weight=w, reduction=r,
                                      n_threads=n_threads)}}
        if loss.has_hessian:
            out["gh"] = loss.gradient_hessian(*arrays, sample_weight=w, n_threads=n_threads)
        return out

    def run(k):
        loss, arrays, w = JOBS[k]
        return (fused(loss, arrays, w, 2), _core.threads_lost_to_fork(),
                fastloss.get_num_threads())

    def check(results, ref, lost):
        for (res, was_lost, nthreads), want in zip(results, ref):
            assert was_lost == lost, (was_lost, lost)
            assert (nthreads == 1) if lost else nthreads >= 1
            for key in want:
                assert same_result(res[key], want[key]), key

    if __name__ == "__main__":
        mode = sys.argv[1]
        if mode == "thread-first":          # the parent's OpenMP pool belongs to another thread
            t = threading.Thread(target=lambda: run(0))
            t.start(); t.join()
        else:                               # the forking thread itself has an OpenMP pool
            run(0)
        ref = [fused(loss, arrays, w, 1) for loss, arrays, w in JOBS]
        if mode in ("fork", "thread-first"):
            ctx = mp.get_context("fork")
            lost = mode == "fork" and _core.build_info()["openmp"]
        else:
            ctx = mp.get_context(mode)
            lost = False
        with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
            check(list(pool.map(run, range(len(JOBS)))), ref, lost)
        if mode == "fork":                  # a bare os.fork, the child calling every kernel
            pid = os.fork()
            if pid == 0:
                try:
                    check([run(k) for k in range(len(JOBS))], ref, lost)
                    # threads started in the child have a fresh OpenMP pool
                    box = []
                    t = threading.Thread(target=lambda: box.append(_core.threads_lost_to_fork()))
                    t.start(); t.join()
                    assert box == [False]
                except BaseException as exc:
                    print("child failed:", repr(exc), flush=True)
                    os._exit(1)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        # the parent is unaffected
        assert not _core.threads_lost_to_fork()
        check([run(k) for k in range(len(JOBS))], ref, False)
        print("ok", mode)
''')


def _run_child(mode: str, tmp_path, timeout: float = 240.0):
    # a file, not -c: "spawn" and "forkserver" children import the main module by path
    script = tmp_path / "fork_child.py"
    script.write_text(_CHILD_SCRIPT.format(tests=str(ROOT / "tests")))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run([sys.executable, str(script), mode], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{mode}: the child processes hung (OpenMP after fork?)")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"ok {mode}" in proc.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_fork_after_the_parent_ran_openmp_does_not_hang(tmp_path):
    """multiprocessing with "fork" (ProcessPoolExecutor) and a bare os.fork, after the forking
    thread ran kernels on 2 threads: the children finish, with the serial results, on one
    thread (threads_lost_to_fork); threads they start, and the parent, keep OpenMP."""
    _run_child("fork", tmp_path)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_fork_when_another_thread_ran_openmp(tmp_path):
    """The OpenMP pool belonged to another thread: the forked children keep every thread."""
    _run_child("thread-first", tmp_path)


@pytest.mark.parametrize("method", ["spawn"])
def test_spawn(method, tmp_path):
    """The start method to use with OpenMP: children keep every thread."""
    import multiprocessing as mp

    if method not in mp.get_all_start_methods():
        pytest.skip(f"no {method} here")
    _run_child(method, tmp_path)
