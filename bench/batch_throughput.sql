-- uhok_embed_batch over the demo's 350 names (table bench_names) inside the server, best of
-- three runs, in names per second, printed as one NOTICE. The model, batch size and threads come
-- from the caller (PGOPTIONS).
DO $$
DECLARE t0 timestamptz; names text[]; best float8 := 0; n int;
BEGIN
    SELECT array_agg(name) INTO names FROM bench_names;
    PERFORM uhok_embed('warm up');
    FOR i IN 1..3 LOOP
        t0 := clock_timestamp();
        SELECT count(*) INTO n FROM unnest(uhok_embed_batch(names));
        best := greatest(best, n / extract(epoch FROM clock_timestamp() - t0));
    END LOOP;
    RAISE NOTICE '%', round(best::numeric);
END $$;
