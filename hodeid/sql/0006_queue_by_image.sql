-- A worker takes the best queued job of its image (or of no image): one ordered lookup per image,
-- so jobs of other images waiting at the head of the queue cost it nothing.
CREATE INDEX jobs_queue_by_image ON jobs (image, priority DESC, id) WHERE state = 'queued';
