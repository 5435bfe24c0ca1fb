// The case study's producer Worker: a Hono app that records the change and queues the email
// job. Cloudflare has no trigger from the database to the queue, so the API route does both:
// the row goes to D1, then the job goes to the queue (two calls, not one transaction).
import { Hono } from "hono";

const app = new Hono();

app.post("/api/signup", async (c) => {
  const { email, name } = await c.req.json();
  if (!email) return c.json({ error: "email is required" }, 400);
  const userId = crypto.randomUUID();
  await c.env.DB.prepare(
    "INSERT INTO users (id, email, full_name, created_at) VALUES (?, ?, ?, ?)",
  )
    .bind(userId, email, name ?? null, new Date().toISOString())
    .run();
  await c.env.EMAIL_QUEUE.send({ type: "welcome_email", user_id: userId, email, name });
  return c.json({ id: userId }, 201);
});

app.post("/api/tasks/:id/assign", async (c) => {
  const taskId = Number(c.req.param("id"));
  const { assignee_id: assigneeId, assigner_id: assignerId } = await c.req.json();
  const task = await c.env.DB.prepare("SELECT title FROM tasks WHERE id = ?").bind(taskId).first();
  if (!task) return c.json({ error: "task not found" }, 404);
  await c.env.DB.prepare("UPDATE tasks SET assignee_id = ? WHERE id = ?")
    .bind(assigneeId, taskId)
    .run();
  await c.env.EMAIL_QUEUE.send({
    type: "task_assigned",
    task_id: taskId,
    task_title: task.title,
    assignee_id: assigneeId,
    assigner_id: assignerId,
  });
  return c.json({ ok: true });
});

// Other services queue their own jobs through here (the notify API of the case study).
app.post("/api/jobs", async (c) => {
  const job = await c.req.json();
  await c.env.EMAIL_QUEUE.send(job);
  return c.json({ queued: true }, 202);
});

app.get("/health", (c) => c.json({ ok: true }));

export default app;
