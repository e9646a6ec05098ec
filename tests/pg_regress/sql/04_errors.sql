-- Every broken model folder gives an ERROR with a real SQLSTATE, a message naming the file and
-- a hint naming the setting; the session keeps working afterwards.
CREATE FUNCTION try_model(path text, input text DEFAULT 'x')
RETURNS TABLE (sqlstate text, message text, hint text) LANGUAGE plpgsql AS $$
DECLARE
    v_state text; v_message text; v_hint text;
BEGIN
    PERFORM set_config('uhok_embed.model_path', path, false);
    -- input is a parameter, so the IMMUTABLE call is not folded into a cached plan.
    PERFORM uhok_embed(input);
    RETURN QUERY SELECT '00000'::text, 'ok'::text, NULL::text;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
    RETURN QUERY SELECT v_state, v_message, v_hint;
END $$;

\x on
SELECT * FROM try_model('/tmp/uhok_embed_fixtures/does-not-exist');
SELECT * FROM try_model('/tmp/uhok_embed_fixtures/no-tokenizer');
SELECT * FROM try_model('/tmp/uhok_embed_fixtures/no-weights');
SELECT * FROM try_model('/tmp/uhok_embed_fixtures/no-pooling');
SELECT * FROM try_model('/tmp/uhok_embed_fixtures/truncated-weights');
SELECT * FROM try_model('/tmp/uhok_embed_fixtures/wrong-shapes');
SELECT * FROM try_model('/tmp/uhok_embed_fixtures/bad-tokenizer');
SELECT * FROM try_model('/tmp/uhok_embed_fixtures/bad-config');
SELECT * FROM try_model('/tmp/uhok_embed_fixtures/unreadable-config');
SELECT * FROM try_model('relative/path');
\x off

-- As a client sees it.
SET uhok_embed.model_path = '/tmp/uhok_embed_fixtures/truncated-weights';
SELECT uhok_embed('갈비탕');
-- uhok_embed_info() reports a failed load instead of raising, like a health check.
SELECT uhok_embed_info()->>'status' AS status, uhok_embed_info()->>'loaded' AS loaded,
       uhok_embed_info()->>'error' AS error;
-- A failed load is not cached: the same session sets a good path and embeds.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
SELECT vector_dims(uhok_embed('갈비탕')) AS dims_after_error;

-- Only a superuser may point the server at files.
CREATE ROLE uhok_embed_regress_user;
GRANT USAGE ON SCHEMA public TO uhok_embed_regress_user;
SET ROLE uhok_embed_regress_user;
SET uhok_embed.model_path = '/etc';
SELECT set_config('uhok_embed.model_path', '/etc', false);
-- ...but may embed with the model the superuser chose.
SELECT vector_dims(uhok_embed('chocolate cake')) AS dims_as_user;
SHOW uhok_embed.model_path;
RESET ROLE;
DROP OWNED BY uhok_embed_regress_user;
DROP ROLE uhok_embed_regress_user;

-- Bad settings of the integer kind are refused by PostgreSQL itself.
SET uhok_embed.threads = 0;
DROP FUNCTION try_model(text, text);
