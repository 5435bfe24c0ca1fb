// Test harness around the consumer Worker (not part of the design): it lets the comparison
// crash an invocation mid-batch. When the provider answers with `x-compare-crash`, the email
// has been accepted, and the invocation dies right there: the handler never learns of the
// answer (it waits forever) and the invocation fails, as when an isolate is killed. Queues
// then redelivers what the invocation had not finished.
import consumer from "../src/consumer.js";

const realFetch = globalThis.fetch;
let crashCurrent = null;

globalThis.fetch = async (...args) => {
  const response = await realFetch(...args);
  if (response.headers.get("x-compare-crash") && crashCurrent) {
    console.error("harness: consumer invocation crashed mid-batch");
    crashCurrent(new Error("consumer invocation crashed mid-batch"));
    return new Promise(() => {});
  }
  return response;
};

export default {
  async queue(batch, env, ctx) {
    const crashed = new Promise((_, reject) => {
      crashCurrent = reject;
    });
    try {
      await Promise.race([consumer.queue(batch, env, ctx), crashed]);
    } finally {
      crashCurrent = null;
    }
  },
  scheduled: consumer.scheduled,
};
