// The agenda peer of sv0-bench: the real npm `agenda` 6 with `@agendajs/mongo-backend`, run
// against the same devdb as our worker. sv0-bench starts this program and reads its stdout.
//
//   node peer.mjs worker  URI DB CONCURRENCY      serve the no-op kind until SIGTERM; prints "ready"
//   node peer.mjs enqueue URI DB COUNT [PER_SEC]  enqueue COUNT no-op jobs (at PER_SEC, or at once)
//   node peer.mjs history URI DB COUNT            insert COUNT finished no-op jobs; prints "done"
//
// Every job carries `data.enqueued_ms` (the enqueuer's clock), so the bench can compute
// enqueue→start latency as `lastRunAt − enqueued_ms`: both clocks are this machine's.

import { Agenda } from 'agenda';
import { MongoBackend } from '@agendajs/mongo-backend';
import { MongoClient } from 'mongodb';

const KIND = 'noop';
// How many `now()` calls the bulk enqueue keeps in flight: agenda has no bulk insert, and one at a
// time would make pre-enqueueing 10,000 jobs slow for no benefit to the measurement.
const ENQUEUE_IN_FLIGHT = 32;

const [mode, uri, dbName, countArg, rateArg] = process.argv.slice(2);
if (!mode || !uri || !dbName || !countArg) {
  console.error('usage: node peer.mjs worker|enqueue|history URI DB N [PER_SEC]');
  process.exit(2);
}
const count = Number(countArg);

// The driver is handed a connected Db rather than a URI: the one client is then ours to close,
// and the connection options stay visible here. devdb has no `hello` command; the driver only
// uses it when a Stable API version is set (we set none) or the server advertises `helloOk`
// (devdb does not), so the legacy handshake works unchanged.
const client = await MongoClient.connect(uri);
const db = client.db(dbName);

function newAgenda(concurrency) {
  return new Agenda({
    backend: new MongoBackend({ mongo: db }),
    processEvery: 100,
    maxConcurrency: concurrency,
    defaultConcurrency: concurrency,
  });
}

if (mode === 'worker') {
  const agenda = newAgenda(count);
  agenda.define(KIND, async () => {}, { concurrency: count });
  await agenda.start();
  console.log('ready');
  const stop = async () => {
    await agenda.stop(false);
    await client.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else if (mode === 'enqueue') {
  const agenda = newAgenda(1);
  await agenda.ready;
  const perSec = rateArg ? Number(rateArg) : 0;
  if (perSec > 0) {
    // Paced from a fixed start so that a slow insert does not shift every later one.
    const start = Date.now();
    for (let i = 0; i < count; i++) {
      const due = start + (i * 1000) / perSec;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await agenda.now(KIND, { enqueued_ms: Date.now() });
    }
  } else {
    for (let i = 0; i < count; i += ENQUEUE_IN_FLIGHT) {
      const n = Math.min(ENQUEUE_IN_FLIGHT, count - i);
      await Promise.all(
        Array.from({ length: n }, () => agenda.now(KIND, { enqueued_ms: Date.now() })),
      );
    }
  }
  console.log('done');
  await client.close();
} else if (mode === 'history') {
  // What agenda leaves behind for a finished one-time job (it keeps them unless
  // removeOnComplete): nextRunAt null, lockedAt null, lastRunAt and lastFinishedAt set. Written
  // with insertMany because creating 50,000 jobs through agenda and running them would take
  // minutes; the shape is that of the documents agenda itself writes.
  const jobs = db.collection('agendaJobs');
  const at = new Date(Date.now() - 86_400_000); // a day ago, before any measured job
  const batch = 5000;
  for (let i = 0; i < count; i += batch) {
    const docs = Array.from({ length: Math.min(batch, count - i) }, () => ({
      name: KIND,
      data: { enqueued_ms: at.getTime() },
      type: 'normal',
      priority: 0,
      nextRunAt: null,
      lockedAt: null,
      lastFinishedAt: at,
      failedAt: null,
      failCount: null,
      failReason: null,
      repeatTimezone: null,
      lastRunAt: at,
      repeatInterval: null,
      repeatAt: null,
      disabled: null,
      progress: null,
      debounceStartedAt: null,
      fork: null,
      startDate: null,
      endDate: null,
      skipDays: null,
      lastModifiedBy: null,
    }));
    await jobs.insertMany(docs, { ordered: false });
  }
  console.log('done');
  await client.close();
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
