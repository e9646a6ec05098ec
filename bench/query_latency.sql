-- p50 and p95 of uhok_embed('갈비탕') inside the server (no client round trip), in ms, printed
-- as one NOTICE "p50 p95". The model, cache and thread settings come from the caller (PGOPTIONS).
DO $$
DECLARE t0 timestamptz; times float8[] := '{}'; q text := '갈비탕';
BEGIN
    PERFORM uhok_embed('warm up');
    FOR i IN 1..300 LOOP
        t0 := clock_timestamp();
        PERFORM uhok_embed(q);  -- q is a variable, so the call is not folded into the plan
        times := times || extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
    RAISE NOTICE '%', (SELECT format('%s %s', round(percentile_cont(0.5) WITHIN GROUP (ORDER BY t)::numeric, 3),
                                            round(percentile_cont(0.95) WITHIN GROUP (ORDER BY t)::numeric, 3))
                       FROM unnest(times) t);
END $$;
