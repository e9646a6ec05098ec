-- How long the first uhok_embed() of a fresh connection takes inside the server, in ms, printed
-- as one NOTICE. Run it as the first statement of a new connection.
DO $$
DECLARE t0 timestamptz := clock_timestamp(); q text := '갈비탕';
BEGIN
    PERFORM uhok_embed(q);
    RAISE NOTICE '%', round((extract(epoch FROM clock_timestamp() - t0) * 1000)::numeric, 1);
END $$;
