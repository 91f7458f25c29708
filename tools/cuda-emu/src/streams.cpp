// Streams, events and deferred execution. Every piece of device work (kernel, copy, memset,
// event record, wait) is an operation with a global sequence number, queued on its stream.
// In deferred mode (the default) nothing runs until the host synchronizes: a stream or
// event sync, a synchronous copy, cudaDeviceSynchronize. A missing synchronization then
// shows up as wrong values rather than passing by luck. Ordering follows CUDA: operations of
// one stream in order; an operation on the legacy default stream waits for all earlier work
// of the blocking streams and they for its; cudaStreamWaitEvent waits for the event's
// position in its stream. Eager mode runs every operation as soon as it is queued.
#include <algorithm>
#include <chrono>
#include <deque>
#include <set>

#include "emu.h"

namespace cuda_emu {

struct Op {
  uint64_t seq;
  const char* what;
  std::function<void()> work;
};

struct Stream {
  std::deque<Op> pending;
  bool legacy = false;
  bool blocking = true;  // synchronizes with the legacy stream (not cudaStreamNonBlocking)
};

namespace {

struct Queues {
  Stream legacy;
  std::set<Stream*> streams;  // created streams, not the legacy one
  uint64_t next_seq = 1;
  uint64_t pending = 0;
  Counters counters;
  Queues() { legacy.legacy = true; }
};

Queues& queues() {
  static Queues* q = new Queues;  // never destroyed
  return *q;
}

void satisfy_dependencies(Stream* s, uint64_t seq) {
  Queues& q = queues();
  if (s->legacy) {
    for (Stream* b : q.streams)
      if (b->blocking) drain_stream(b, seq - 1);
  } else if (s->blocking) {
    drain_stream(&q.legacy, seq - 1);
  }
}

// Every operation with a smaller sequence number than the oldest still queued has run.
uint64_t executed_frontier() {
  Queues& q = queues();
  uint64_t oldest = q.next_seq;
  if (!q.legacy.pending.empty()) oldest = std::min(oldest, q.legacy.pending.front().seq);
  for (Stream* s : q.streams)
    if (!s->pending.empty()) oldest = std::min(oldest, s->pending.front().seq);
  return oldest - 1;
}

}  // namespace

std::recursive_mutex& device_mutex() {
  static std::recursive_mutex* m = new std::recursive_mutex;
  return *m;
}

Counters& mutable_counters() { return queues().counters; }

Counters counters() {
  DeviceLock lock(device_mutex());
  Counters c = queues().counters;
  c.pending_ops = queues().pending;
  device_memory_counters(c);
  return c;
}

Stream* resolve_stream(cudaStream_t s, bool* ok) {
  Queues& q = queues();
  *ok = true;
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return &q.legacy;
  Stream* stream = reinterpret_cast<Stream*>(s);
  if (!q.streams.count(stream)) {
    *ok = false;
    return nullptr;
  }
  return stream;
}

Stream* create_stream(bool blocking) {
  auto* s = new Stream;
  s->blocking = blocking;
  queues().streams.insert(s);
  return s;
}

void destroy_stream(Stream* s) {
  // CUDA lets queued work finish after cudaStreamDestroy returns; here it runs now.
  drain_stream(s, UINT64_MAX);
  queues().streams.erase(s);
  delete s;
}

uint64_t enqueue(Stream* s, const char* what, std::function<void()> work) {
  Queues& q = queues();
  const uint64_t seq = q.next_seq++;
  s->pending.push_back(Op{seq, what, std::move(work)});
  ++q.pending;
  if (!config().deferred) drain_stream(s, seq);
  return seq;
}

void drain_stream(Stream* s, uint64_t upto_seq) {
  Queues& q = queues();
  bool ran = false;
  while (!s->pending.empty() && s->pending.front().seq <= upto_seq) {
    Op op = std::move(s->pending.front());
    s->pending.pop_front();
    --q.pending;
    satisfy_dependencies(s, op.seq);
    op.work();
    ran = true;
  }
  if (ran) release_freed_upto(executed_frontier());
}

void drain_all() {
  Queues& q = queues();
  drain_stream(&q.legacy, UINT64_MAX);  // waits for every blocking stream on the way
  for (Stream* s : std::vector<Stream*>(q.streams.begin(), q.streams.end())) drain_stream(s, UINT64_MAX);
}

uint64_t last_seq() { return queues().next_seq - 1; }
bool work_outstanding() { return queues().pending > 0; }
bool stream_idle(Stream* s) { return s->pending.empty(); }
void count_host_sync() { ++queues().counters.host_syncs; }

// ---- events

struct Event {
  bool timing = true;
  Stream* stream = nullptr;  // where the last record was queued
  uint64_t seq = 0;          // its sequence number; 0: never recorded
  bool done = false;
  std::chrono::steady_clock::time_point time;
};

namespace {
std::set<Event*>& events() {
  static auto* e = new std::set<Event*>;
  return *e;
}
}  // namespace

Event* create_event(bool timing) {
  auto* e = new Event;
  e->timing = timing;
  events().insert(e);
  return e;
}

bool valid_event(Event* e) { return events().count(e) != 0; }

void destroy_event(Event* e) {
  events().erase(e);
  delete e;  // a queued record of it checks valid_event first (record_event)
}

void record_event(Event* e, Stream* s) {
  e->stream = s;
  e->done = false;
  // The queued record checks that the event still exists and was not recorded again since,
  // so destroying or re-recording an event with a record still queued is safe, as in CUDA.
  Event* target = e;
  const uint64_t seq = queues().next_seq;
  e->seq = seq;
  enqueue(s, "event record", [target, seq] {
    if (valid_event(target) && target->seq == seq) {
      target->done = true;
      target->time = std::chrono::steady_clock::now();
    }
  });
}

void wait_event(Event* e) {
  if (e->seq == 0 || e->done) return;
  if (valid_event(e) && e->stream) drain_stream(e->stream, e->seq);
}

bool event_done(Event* e) { return e->seq == 0 || e->done; }

bool event_timing(Event* e) { return e->timing; }

double event_elapsed_ms(Event* a, Event* b) {
  return std::chrono::duration<double, std::milli>(b->time - a->time).count();
}

void stream_wait_event(Stream* s, Event* e) {
  if (e->seq == 0) return;  // never recorded: nothing to wait for
  Stream* on = e->stream;
  const uint64_t seq = e->seq;
  enqueue(s, "stream wait event", [on, seq] {
    if (queues().streams.count(on) || on == &queues().legacy) drain_stream(on, seq);
  });
}

}  // namespace cuda_emu
