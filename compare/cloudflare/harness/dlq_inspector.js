// Operator tooling (not part of the design): consumes the dead letter queue so what lands
// there can be counted, and hands each message to the host. Queues keeps only the message
// body and its attempt count; there is no field for why it failed.
export default {
  async queue(batch, env) {
    const dead = batch.messages.map((m) => ({
      id: m.id,
      attempts: m.attempts,
      timestamp: m.timestamp,
      body: m.body,
    }));
    await env.HOST.fetch("http://host/dead", { method: "POST", body: JSON.stringify(dead) });
    batch.ackAll();
  },
};
