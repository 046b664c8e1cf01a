"""Slurm's answers parsed, and what each job state means for a task: tables from the outputs
recorded in docs/SLURM-NOTES.md (Slurm 22.05) plus sacct lines as real clusters print them."""

from __future__ import annotations

import pytest

from dobby.core.models import Host, Reason, TaskStatus
from dobby.core.slurm import SlurmSettings
from dobby.machines.checks import interpret_slurm
from dobby.machines.slurm.capacity import capacity, host_gpus, parse_scontrol_nodes, parse_sinfo
from dobby.machines.slurm.jobs import (
    JobInfo,
    JobPhase,
    jobs_purged,
    merge,
    parse_sacct,
    parse_scontrol_jobs,
    parse_squeue,
    parse_submit,
    sacct_unavailable,
)
from dobby.machines.slurm.outcome import Action, job_outcome, waiting_text
from dobby.machines.slurm.text import gpu_count, gpu_indices, parse_fields

DOWN = "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions"
SQUEUE = f"""\
16|PENDING|Resources|
17|PENDING|Priority|
3|PENDING|None|
7|PENDING|PartitionConfig|
4|PENDING|{DOWN}|
14|RUNNING|None|vm
2|COMPLETED|None|vm
5|FAILED|NonZeroExitCode|vm
6|TIMEOUT|TimeLimit|vm
8|CANCELLED|PartitionConfig|
9|FAILED|JobLaunchFailure|vm
10|COMPLETING|None|vm
"""


def test_squeue_lines_give_state_reason_and_nodes() -> None:
    jobs = parse_squeue(SQUEUE)
    assert jobs["16"] == JobInfo(job_id="16", state="PENDING", reason="Resources", nodes="")
    assert jobs["3"].reason == ""
    assert jobs["4"].reason.startswith("Nodes required for job are DOWN, DRAINED")
    assert (jobs["14"].state, jobs["14"].nodes, jobs["14"].phase) == (
        "RUNNING",
        "vm",
        JobPhase.RUNNING,
    )
    assert jobs["10"].phase is JobPhase.RUNNING
    assert [jobs[j].phase for j in ("2", "5", "6", "8", "9")] == [JobPhase.ENDED] * 5
    assert jobs["17"].phase is JobPhase.QUEUED
    assert parse_squeue("") == {}


SCONTROL_DONE = (
    "JobId=2 JobName=dobby-t1 UserId=slurmt1(1004) GroupId=slurmt1(1004) MCS_label=N/A "
    "Priority=4294901759 Nice=0 Account=acme QOS=(null) JobState=FAILED Reason=NonZeroExitCode "
    "Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 "
    "DerivedExitCode=0:0 RunTime=00:00:01 TimeLimit=00:10:00 TimeMin=N/A "
    "SubmitTime=2026-11-30T10:09:59 Partition=gpu AllocNode:Sid=localhost:15965 "
    "ReqNodeList=(null) ExcNodeList=(null) NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 "
    "CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,node=1,billing=1 JOB_GRES=gpu:2 Nodes=vm "
    "CPU_IDs=0 Mem=0 GRES=gpu:2(IDX:0-1) Features=(null) Command=/home/u/my jobs/job.sh "
    "WorkDir=/home/u/my jobs StdErr=/home/u/my jobs/err StdIn=/dev/null "
    "StdOut=/home/u/my jobs/out Power= TresPerNode=gres:gpu:2"
)
SCONTROL_PENDING = (
    "JobId=3 JobName=wrap JobState=PENDING "
    "Reason=Nodes_required_for_job_are_DOWN,_DRAINED_or_reserved_for_jobs_in_higher_priority_"
    "partitions Dependency=(null) ExitCode=0:0 NodeList= BatchHost=vm"
)


def test_scontrol_show_job_lines() -> None:
    jobs = parse_scontrol_jobs(SCONTROL_DONE + "\n" + SCONTROL_PENDING + "\n")
    done = jobs["2"]
    assert (done.state, done.reason, done.exit_status, done.signal) == (
        "FAILED",
        "NonZeroExitCode",
        3,
        0,
    )
    assert (done.nodes, done.gpu_indices, done.name) == ("vm", (0, 1), "dobby-t1")
    pending = jobs["3"]
    assert pending.nodes == "" and pending.reason.startswith("Nodes_required")
    fields = parse_fields(SCONTROL_DONE)
    assert fields["WorkDir"] == "/home/u/my jobs"  # values with spaces run to the next key
    assert fields["Nodes"] == "vm" and fields["TRES"] == "cpu=1,node=1,billing=1"


@pytest.mark.parametrize(
    ("exit_code", "status", "signal"),
    [("0:0", 0, 0), ("3:0", 3, 0), ("0:15", 0, 15), ("143:0", 143, 0), ("0:53", 0, 53)],
)
def test_exit_codes(exit_code: str, status: int, signal: int) -> None:
    line = f"JobId=1 JobState=FAILED Reason=None ExitCode={exit_code} NodeList=vm"
    job = parse_scontrol_jobs(line)["1"]
    assert (job.exit_status, job.signal) == (status, signal)


SACCT = """\
21|COMPLETED|0:0|node07
22|FAILED|3:0|node07
23|CANCELLED by 1004|0:15|node08
24|TIMEOUT|0:15|node08
25|OUT_OF_MEMORY|0:125|gpu-a12
26|PENDING|0:0|None assigned
27|NODE_FAIL|0:0|gpu-a13
27.batch|CANCELLED|0:15|gpu-a13
"""


def test_sacct_lines_and_its_disabled_answer() -> None:
    jobs = parse_sacct(SACCT)
    assert set(jobs) == {"21", "22", "23", "24", "25", "26", "27"}
    assert (jobs["23"].state, jobs["23"].cancelled_by) == ("CANCELLED", "1004")
    assert (jobs["22"].exit_status, jobs["24"].signal) == (3, 15)
    assert jobs["26"].nodes == "" and jobs["25"].nodes == "gpu-a12"
    assert jobs["27"].state == "NODE_FAIL"
    assert sacct_unavailable("Slurm accounting storage is disabled\n")
    assert not sacct_unavailable("sacct: error: Problem talking to the database")
    assert jobs_purged("slurm_load_jobs error: Invalid job id specified\n")


def test_merge_fills_gaps_from_later_sources() -> None:
    squeue = parse_squeue("23|CANCELLED|None|node08\n")
    sacct = parse_sacct(SACCT)
    merged = merge(squeue, sacct)["23"]
    assert (merged.state, merged.cancelled_by, merged.signal) == ("CANCELLED", "1004", 15)


@pytest.mark.parametrize(
    ("stdout", "job"),
    [("1\n", "1"), ("12345;cluster2\n", "12345"), ("17_3\n", "17_3")],
)
def test_sbatch_parsable_answers(stdout: str, job: str) -> None:
    assert parse_submit(stdout) == job


def test_sbatch_without_a_job_id() -> None:
    with pytest.raises(ValueError, match="sbatch printed no job id"):
        parse_submit("Submitted batch job 4\n")


@pytest.mark.parametrize(
    ("gres", "count", "indices"),
    [
        ("gpu:2", 2, ()),
        ("gpu:0", 0, ()),
        ("gpu:1(IDX:0)", 1, (0,)),
        ("gpu:2(IDX:0-1)", 2, (0, 1)),
        ("gpu:a100:4(S:0-1)", 4, ()),
        ("gpu:a100:3(IDX:0,2-3)", 3, (0, 2, 3)),
        ("gpu:a100:1(IDX:0),gpu:v100:2(IDX:1-2)", 3, (0, 1, 2)),
        ("fpga:1,gpu:2", 2, ()),
        ("(null)", 0, ()),
        ("N/A", 0, ()),
        ("", 0, ()),
        ("gpu:a100:0(IDX:N/A)", 0, ()),
    ],
)
def test_gres_strings(gres: str, count: int, indices: tuple[int, ...]) -> None:
    assert gpu_count(gres) == count
    assert gpu_indices(gres) == indices


SINFO = """\
vm|debug*|mixed|gpu:2|gpu:1|1/1/0/2|none|
vm|gpu|mixed|gpu:2|gpu:1|1/1/0/2|none|
n2|gpu|idle|gpu:a100:4(S:0-1)|gpu:a100:0(IDX:N/A)|0/64/0/64|none|
n3|gpu|drained|gpu:a100:4(S:0-1)|gpu:a100:0(IDX:N/A)|0/0/64/64|dobby test | with a pipe|
n4|gpu|mixed*|gpu:a100:4|gpu:a100:1(IDX:0)|8/56/0/64|none|
n5|cpu|allocated|(null)|gpu:0|2/0/0/2|none|
"""


def test_sinfo_nodes_and_partition_capacity() -> None:
    slots = parse_sinfo(SINFO)
    assert len(slots) == 6
    first = slots[0]
    assert (first.node, first.partition, first.default, first.gpus, first.gpus_used) == (
        "vm",
        "debug",
        True,
        2,
        1,
    )
    assert (first.cpus_alloc, first.cpus_idle, first.cpus_total) == (1, 1, 2)
    assert slots[3].reason == "dobby test | with a pipe" and not slots[3].available
    assert not slots[4].available  # '*': not responding
    gpu = capacity(slots, "gpu")
    assert (gpu.nodes, gpu.nodes_available, gpu.gpus, gpu.gpus_free) == (4, 2, 6, 5)
    assert (gpu.max_gpus_per_node, gpu.max_free_per_node) == (4, 4)
    assert set(gpu.unavailable) == {"n3", "n4"}
    assert gpu.unavailable["n3"] == "drained: dobby test | with a pipe"
    default = capacity(slots)  # no partition set: the cluster's default one
    assert (default.partitions, default.gpus_free, default.cpus_idle) == (("debug",), 1, 1)
    both = capacity(slots, "debug,gpu")
    assert both.nodes == 4  # vm counted once


def test_scontrol_show_node_lines() -> None:
    line = (
        "NodeName=vm Arch=x86_64 CoresPerSocket=2  CPUAlloc=2 CPUEfctv=2 CPUTot=2 CPULoad=5.29 "
        "AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:2 GresDrain=N/A GresUsed=gpu:1 "
        "NodeAddr=127.0.0.1 NodeHostName=vm Version=22.05.8 OS=Linux 6.18.44 #1 SMP "
        "PREEMPT_DYNAMIC @0  RealMemory=24105 AllocMem=0 State=IDLE+DRAIN ThreadsPerCore=1 "
        "Partitions=debug,gpu  BootTime=2026-11-30T09:33:06 CfgTRES=cpu=2,mem=24105M,billing=2 "
        "AllocTRES=cpu=2 Reason=dobby test [root@2026-11-30T09:59:35]"
    )
    (node,) = parse_scontrol_nodes(line + "\n")
    assert (node.node, node.state, node.partitions) == ("vm", "IDLE+DRAIN", ("debug", "gpu"))
    assert (node.gpus, node.gpus_used, node.cpus_alloc, node.cpus_total) == (2, 1, 2, 2)
    assert node.reason == "dobby test [root@2026-11-30T09:59:35]"


# -- outcomes --------------------------------------------------------------------------------


def job(state: str, reason: str = "None", **kw: object) -> JobInfo:
    return JobInfo(job_id="7", state=state, reason="" if reason == "None" else reason, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("info", "exit_code", "action", "status", "reason", "words"),
    [
        (job("PENDING", "Priority"), None, Action.WAIT, None, None, "(Priority)"),
        (job("PENDING", "Resources"), None, Action.WAIT, None, None, "(Resources)"),
        (job("PENDING", "QOSMaxJobsPerUserLimit"), None, Action.WAIT, None, None, "QOS"),
        (job("CONFIGURING"), None, Action.WAIT, None, None, "being set up (CONFIGURING)"),
        (job("PENDING"), None, Action.WAIT, None, None, "not looked at it yet"),
        (job("RUNNING", nodes="vm"), None, Action.FOLLOW, None, None, ""),
        (job("COMPLETING", nodes="vm"), None, Action.FOLLOW, None, None, ""),
        (job("COMPLETED", nodes="vm"), 0, Action.COLLECT, None, None, ""),
        (job("FAILED", "NonZeroExitCode", exit_status=3), 3, Action.COLLECT, None, None, ""),
        # the exit file is not visible on the login node yet: the job's status is run.sh's
        (job("COMPLETED", exit_status=0), None, Action.COLLECT, None, None, ""),
        (job("FAILED", "NonZeroExitCode", exit_status=3), None, Action.COLLECT, None, None, ""),
        (
            job("TIMEOUT", "TimeLimit", nodes="vm", signal=15), None, Action.FINISH,
            TaskStatus.FAILED, Reason.TIMEOUT, "reached its Slurm time limit on vm (TIMEOUT)",
        ),
        (
            job("DEADLINE"), None, Action.FINISH, TaskStatus.FAILED, Reason.TIMEOUT, "deadline",
        ),
        (
            job("OUT_OF_MEMORY", nodes="g1"), None, Action.FINISH, TaskStatus.FAILED,
            Reason.EXIT_CODE, "ran out of memory on g1",
        ),
        (job("NODE_FAIL", nodes="g1"), None, Action.RESUBMIT, None, None, "its node failed"),
        (job("PREEMPTED"), None, Action.RESUBMIT, None, None, "preempted"),
        (job("BOOT_FAIL"), None, Action.RESUBMIT, None, None, "failed to boot"),
        (
            job("CANCELLED", nodes="vm", signal=15), None, Action.FINISH, TaskStatus.CANCELLED,
            None, "cancelled in Slurm outside Dobby (scancel)",
        ),
        (
            job("CANCELLED", cancelled_by="1004"), None, Action.FINISH, TaskStatus.CANCELLED,
            None, "outside Dobby by user 1004",
        ),
        (
            job("CANCELLED", "PartitionConfig"), None, Action.FINISH, TaskStatus.CANCELLED,
            None, "outside Dobby",
        ),
        (
            job("FAILED", "JobLaunchFailure", nodes="vm", exit_status=0, signal=53), None,
            Action.FINISH, TaskStatus.FAILED, Reason.DISPATCH_ERROR,
            "failed to launch on vm (JobLaunchFailure, signal 53): check that the host's "
            "slurm.workdir",
        ),
        (
            job("FAILED", "JobLaunchFailure", exit_status=0, signal=9), None, Action.FINISH,
            TaskStatus.FAILED, Reason.DISPATCH_ERROR, "usually out of memory",
        ),
        (
            job("FAILED", "BadConstraints"), None, Action.FINISH, TaskStatus.FAILED,
            Reason.DISPATCH_ERROR, "(BadConstraints)",
        ),
        (
            job("FAILED", "NonZeroExitCode", exit_status=98), None, Action.FINISH,
            TaskStatus.FAILED, Reason.EXIT_CODE, "run.sh left no exit code",
        ),
        (
            job("FAILED", "NonZeroExitCode", exit_status=96), None, Action.FINISH,
            TaskStatus.FAILED, Reason.EXIT_CODE, "tmux could not start",
        ),
        (
            job("PENDING", "DependencyNeverSatisfied"), None, Action.FINISH, TaskStatus.FAILED,
            Reason.DEPENDENCY_FAILED, "can never start",
        ),
        (
            job("CANCELLED", "DependencyNeverSatisfied"), None, Action.FINISH,
            TaskStatus.FAILED, Reason.DEPENDENCY_FAILED, "a job it depends on failed",
        ),
        (job("SOMETHING_NEW"), None, Action.WAIT, None, None, "in state SOMETHING_NEW"),
        (
            job(""), None, Action.FINISH, TaskStatus.FAILED, Reason.HOST_LOST,
            "no longer known to Slurm",
        ),
    ],
)  # fmt: skip
def test_job_outcomes(
    info: JobInfo,
    exit_code: int | None,
    action: Action,
    status: TaskStatus | None,
    reason: Reason | None,
    words: str,
) -> None:
    outcome = job_outcome(info, exit_code=exit_code)
    assert (outcome.action, outcome.status, outcome.reason) == (action, status, reason)
    assert words in outcome.message


def test_collect_carries_the_exit_code() -> None:
    assert job_outcome(job("COMPLETED"), exit_code=0).exit_code == 0
    assert job_outcome(job("COMPLETED"), exit_code=None).exit_code == 0
    failed = job("FAILED", "NonZeroExitCode", exit_status=124)
    assert job_outcome(failed, exit_code=None).exit_code == 124


def test_a_lost_node_is_resubmitted_once() -> None:
    lost = job("NODE_FAIL", nodes="g1")
    assert job_outcome(lost, exit_code=None, resubmits_left=1).action is Action.RESUBMIT
    again = job_outcome(lost, exit_code=None, resubmits_left=0)
    assert (again.action, again.status, again.reason) == (
        Action.FINISH,
        TaskStatus.FAILED,
        Reason.HOST_LOST,
    )
    assert "already been submitted again" in again.message


def test_timeout_names_the_limit() -> None:
    outcome = job_outcome(job("TIMEOUT"), exit_code=None, time_limit="00:01:00")
    assert "time limit (00:01:00)" in outcome.message


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        ("Priority", "queued behind jobs of higher priority (Priority)"),
        ("Resources", "first in line, waiting for resources to free up (Resources)"),
        ("", "submitted; Slurm's scheduler has not looked at it yet"),
        ("QOSMaxJobsPerUserLimit", "held by a limit of its QOS or account (QOSMaxJobsPerUser"),
        ("AssocGrpGRES", "held by a limit of its QOS or account (AssocGrpGRES)"),
        ("PartitionConfig", "asks for more than the partition has: it will not start as it is "
         "(PartitionConfig)"),
        ("Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority "
         "partitions", "the nodes it needs are down, drained or kept for other partitions"),
        ("SomethingElse", "pending in Slurm (SomethingElse)"),
    ],
)  # fmt: skip
def test_waiting_text(reason: str, text: str) -> None:
    assert waiting_text(reason).startswith(text)


def test_gpu_view_of_a_partition() -> None:
    view = host_gpus(parse_sinfo(SINFO), "gpu")
    assert view.source == "slurm" and view.reason is None
    names = [(g.name, g.allocated) for g in view.gpus]
    # vm: 2 GPUs, 1 held; n2: 4 free; n3 (drained) and n4 (not responding) take no jobs
    assert names == [
        ("vm gpu0 (Slurm)", True),
        ("vm gpu1 (Slurm)", False),
        *[(f"n2 gpu{k} (Slurm)", False) for k in range(4)],
    ]
    assert [g.index for g in view.gpus] == list(range(6))
    assert view.slurm is not None
    assert (view.slurm["gpus"], view.slurm["gpus_free"], view.slurm["nodes"]) == (6, 5, 4)
    assert set(view.slurm["unavailable"]) == {"n3", "n4"}
    none = host_gpus(parse_sinfo(SINFO), "cpu")
    assert none.gpus == [] and none.reason == "no GPU on a node of cpu that takes jobs (Slurm GRES)"


@pytest.mark.parametrize(
    ("partition", "gpus", "answer", "status", "words"),
    [
        ("gpu", True, (0, SINFO, ""), "ok", "partition gpu: 2 of 4 node(s) take jobs, 6 GPU(s)"),
        ("cpu", True, (0, SINFO, ""), "fail", "the inventory says gpus: true"),
        ("cpu", False, (0, SINFO, ""), "ok", "partition cpu: 1 of 1 node(s)"),
        ("nope", False, (0, "", ""), "fail", "no node in partition nope"),
        (None, False, (1, "", "sinfo: error: resolve_ctls_from_dns_srv: res_nsearch error\n"
                       "sinfo: fatal: Could not establish a configuration source"), "fail",
         "sinfo failed (exit 1): sinfo: fatal: Could not establish a configuration source"),
        (None, False, (127, "", "bash: line 1: sinfo: command not found"), "fail",
         "needs Slurm's client commands"),
    ],
)  # fmt: skip
def test_hosts_check_of_a_slurm_partition(
    partition: str | None, gpus: bool, answer: tuple[int, str, str], status: str, words: str
) -> None:
    host = Host(
        name="hpc", connection="slurm", address="login", gpus=gpus,
        slurm=SlurmSettings(partition=partition),
    )  # fmt: skip
    check = interpret_slurm(host, *answer)
    assert (check.name, check.status) == ("slurm", status)
    assert words in check.message
