// The case study's consumer Worker: Queues delivers batches (max_batch_size 10); each message
// is acked when its email is sent and retried when it fails. After max_retries (3) Queues
// moves it to the dead letter queue. Unknown types are logged and acked. Cron Triggers run
// the daily stats and the weekly cleanup on D1.

async function sendEmail(env, to, subject, text, html) {
  const response = await fetch(`${env.SENDGRID_API_URL}/v3/mail/send`, {
    method: "POST",
    headers: {
      Authorization: `Bearer ${env.SENDGRID_API_KEY}`,
      "Content-Type": "application/json",
    },
    body: JSON.stringify({
      personalizations: [{ to: [{ email: to }] }],
      from: { email: env.EMAIL_FROM },
      subject,
      content: [
        { type: "text/plain", value: text },
        { type: "text/html", value: html },
      ],
    }),
  });
  if (!response.ok) {
    throw new Error(`SendGrid error: ${response.status} ${(await response.text()).slice(0, 200)}`);
  }
}

async function sendWelcome(job, env) {
  const name = job.name || "there";
  await sendEmail(
    env,
    job.email,
    "Welcome to TaskFlow!",
    `Hi ${name}, welcome to TaskFlow!`,
    `<h1>Welcome, ${name}!</h1><p>Thanks for joining TaskFlow.</p>`,
  );
}

async function sendTaskAssigned(job, env) {
  const user = await env.DB.prepare("SELECT email FROM users WHERE id = ?")
    .bind(job.assignee_id)
    .first();
  if (!user) throw new Error(`assignee ${job.assignee_id} not found`);
  await sendEmail(
    env,
    user.email,
    `New task assigned: ${job.task_title}`,
    `You have been assigned: ${job.task_title}`,
    `<p>You have been assigned: <b>${job.task_title}</b></p>`,
  );
}

async function dailyStats(env) {
  await env.DB.prepare(
    `INSERT OR REPLACE INTO daily_stats (date, new_tasks, completed_tasks, new_users, computed_at)
     SELECT date('now', '-1 day'),
            (SELECT count(*) FROM tasks WHERE date(created_at) = date('now', '-1 day')),
            (SELECT count(*) FROM tasks WHERE date(completed_at) = date('now', '-1 day')),
            (SELECT count(*) FROM users WHERE date(created_at) = date('now', '-1 day')),
            datetime('now')`,
  ).run();
  console.log("daily stats computed");
}

async function weeklyCleanup(env) {
  const { meta } = await env.DB.prepare(
    "DELETE FROM daily_stats WHERE date < date('now', '-365 days')",
  ).run();
  console.log(`weekly cleanup removed ${meta.changes} rows`);
}

export default {
  async queue(batch, env) {
    for (const message of batch.messages) {
      const job = message.body;
      try {
        switch (job.type) {
          case "welcome_email":
            await sendWelcome(job, env);
            break;
          case "task_assigned":
            await sendTaskAssigned(job, env);
            break;
          default:
            console.log(`Unknown job type: ${job.type}`);
        }
        message.ack();
      } catch (error) {
        console.error(`Failed to process message ${message.id}: ${error.message}`);
        message.retry();
      }
    }
  },

  async scheduled(event, env) {
    switch (event.cron) {
      case "0 1 * * *":
        await dailyStats(env);
        break;
      case "0 2 * * 0":
        await weeklyCleanup(env);
        break;
    }
  },
};
