CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, email TEXT NOT NULL, full_name TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'todo', assignee_id TEXT, created_by TEXT, created_at TEXT NOT NULL DEFAULT (datetime('now')), completed_at TEXT);
CREATE TABLE IF NOT EXISTS daily_stats (date TEXT PRIMARY KEY, new_tasks INTEGER NOT NULL, completed_tasks INTEGER NOT NULL, new_users INTEGER NOT NULL, computed_at TEXT NOT NULL);
