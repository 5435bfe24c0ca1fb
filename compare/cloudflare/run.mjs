// Runs the Cloudflare design locally: the producer and consumer Workers in Miniflare 3 with
// the case study's queue settings, plus the operator's dead-letter inspector. Bundles the
// Workers with esbuild first (as wrangler does). Miniflare 3 has no cron scheduler, so this
// host fires the Cron Triggers itself at their minute, and on POST /scheduled?cron=… (like
// wrangler's --test-scheduled).
//
//   SENDGRID_API_URL=… SENDGRID_API_KEY=… node run.mjs --port N --control-port M
// Prints one JSON line {"ready": true, ...} once both ports answer.
import { readFile } from "node:fs/promises";
import http from "node:http";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { parseArgs } from "node:util";
import * as esbuild from "esbuild";
import { Log, LogLevel, Miniflare } from "miniflare";

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: { port: { type: "string" }, "control-port": { type: "string" } },
});

// The case study's settings (wrangler.consumer.toml). max_batch_timeout is not set there,
// so it is Cloudflare's default, 5 s (Miniflare's own default would be 1 s).
export const QUEUE = {
  name: "email-queue",
  maxBatchSize: 10,
  maxBatchTimeout: 5,
  maxRetries: 3,
  deadLetterQueue: "email-dlq",
};
const CRONS = ["0 1 * * *", "0 2 * * 0"];

await esbuild.build({
  entryPoints: {
    producer: path.join(here, "src/producer.js"),
    consumer: path.join(here, "harness/consumer.js"),
    dlq_inspector: path.join(here, "harness/dlq_inspector.js"),
  },
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  outdir: path.join(here, "dist"),
  logLevel: "warning",
});

const dead = [];
const vars = {
  SENDGRID_API_URL: process.env.SENDGRID_API_URL,
  SENDGRID_API_KEY: process.env.SENDGRID_API_KEY,
  EMAIL_FROM: "noreply@example.com",
};
const d1 = { DB: "taskflow-db" };

const mf = new Miniflare({
  host: "127.0.0.1",
  port: Number(args.port),
  cf: false, // the fallback Request.cf: no fetch of cf.json from the internet
  log: new Log(LogLevel.INFO), // Queues' per-batch lines and dead-letter moves: the operator's view
  compatibilityDate: "2024-09-23",
  workers: [
    {
      name: "producer",
      modules: true,
      scriptPath: path.join(here, "dist/producer.js"),
      d1Databases: d1,
      queueProducers: { EMAIL_QUEUE: QUEUE.name },
    },
    {
      name: "consumer",
      modules: true,
      scriptPath: path.join(here, "dist/consumer.js"),
      d1Databases: d1,
      bindings: vars,
      queueConsumers: {
        [QUEUE.name]: {
          maxBatchSize: QUEUE.maxBatchSize,
          maxBatchTimeout: QUEUE.maxBatchTimeout,
          maxRetries: QUEUE.maxRetries,
          deadLetterQueue: QUEUE.deadLetterQueue,
        },
      },
    },
    {
      name: "dlq-inspector",
      modules: true,
      scriptPath: path.join(here, "dist/dlq_inspector.js"),
      queueConsumers: { [QUEUE.deadLetterQueue]: { maxBatchSize: 100, maxBatchTimeout: 1 } },
      serviceBindings: {
        HOST: async (request) => {
          for (const message of await request.json()) dead.push({ ...message, at: Date.now() / 1000 });
          return new Response(null, { status: 204 });
        },
      },
    },
  ],
});
await mf.ready;

const db = await mf.getD1Database("DB", "producer");
for (const statement of (await readFile(path.join(here, "src/schema.sql"), "utf8")).split(";")) {
  if (statement.trim()) await db.prepare(statement).run();
}

const consumer = await mf.getWorker("consumer");
const runs = [];
async function fire(cron) {
  const result = await consumer.scheduled({ cron, scheduledTime: new Date() });
  runs.push({ cron, at: Date.now() / 1000, outcome: result.outcome });
  return result;
}

function due(cron, now) {
  const [minute, hour, , , weekday] = cron.split(" ");
  return (
    Number(minute) === now.getUTCMinutes() &&
    Number(hour) === now.getUTCHours() &&
    (weekday === "*" || Number(weekday) === now.getUTCDay())
  );
}
setInterval(() => {
  const now = new Date();
  if (now.getUTCSeconds() !== 0) return;
  for (const cron of CRONS) if (due(cron, now)) fire(cron);
}, 1000);

const control = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://host");
  let body;
  if (url.pathname === "/dead") body = dead;
  else if (url.pathname === "/scheduled" && req.method === "POST") {
    body = await fire(url.searchParams.get("cron") ?? CRONS[0]);
  } else if (url.pathname === "/runs") body = runs;
  else if (url.pathname === "/d1") {
    body = (await db.prepare(url.searchParams.get("sql")).all()).results;
  } else body = { ok: true };
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
});
control.listen(Number(args["control-port"]), "127.0.0.1", () => {
  console.log(JSON.stringify({ ready: true, port: Number(args.port), queue: QUEUE }));
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, async () => {
    await mf.dispose();
    process.exit(0);
  });
}
