"""The classify step (worker.pipeline.steps.classify): results handed on, the labelled hook."""

import threading

from schemas.document import InputDocument
from schemas.labels import SourceRef
from tests.fake_engine import FakeEngine
from worker.pipeline.steps.base import MessageRejected
from worker.pipeline.steps.classify import ClassifyStep
from worker.pipeline.work_items import WorkItem


class Recorder:
    """A step that records what it was given and how often it was polled; ``full``: rejects."""

    def __init__(self) -> None:
        self.items: list[WorkItem] = []
        self.polls = 0
        self.full = False

    def submit(self, item: WorkItem) -> None:
        if self.full:
            raise MessageRejected
        self.items.append(item)

    def poll(self) -> None:
        self.polls += 1


def item(offset: int) -> WorkItem:
    work = WorkItem(SourceRef(topic="t", partition=0, offset=offset), 0.0)
    work.document = InputDocument(id=f"d{offset}", text="fish")
    return work


def test_each_labelled_item_is_told_once_after_it_was_handed_on_failures_go_to_failed():
    produce, failed, labelled = Recorder(), Recorder(), []
    engine = FakeEngine(auto=False, fail_ids={"d1"})
    step = ClassifyStep(engine, produce, failed, max_in_flight=8, wakeup=threading.Event(),
                        on_labelled=labelled.append)
    items = [item(offset) for offset in range(3)]
    for work in items:
        step.submit(work)
    step.poll()  # hands the buffer to the engine
    engine.release(3)
    produce.full = True
    step.poll()
    assert labelled == [] and produce.items == [] and failed.items == []  # in line behind d0
    produce.full = False
    step.poll()
    step.poll()
    assert produce.items == [items[0], items[2]] and labelled == [items[0], items[2]]
    assert failed.items == [items[1]]
    assert failed.polls == 4  # its judged dead letters go on from every poll
    assert step.outstanding() == 0
