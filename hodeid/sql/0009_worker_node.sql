-- The machine a worker runs on, as its provider names it (a swarm node's hostname; '' for this host).
ALTER TABLE workers ADD COLUMN node TEXT NOT NULL DEFAULT '';
