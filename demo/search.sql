-- The demo's search: the top 5 of uhok_search() for the psql variable q, with the names.
-- scripts/demo.sh prints it for a few queries; tests/readme_examples.py checks the README's copy.
SELECT row_number() OVER (ORDER BY s.distance) AS rank, s.recipe_id, r."COOKING_NAME" AS cooking_name,
       round(s.distance::numeric, 4) AS distance
FROM uhok_search(:'q', 5) AS s JOIN "RECIPE_VECTOR_TABLE" AS r ON r."RECIPE_ID" = s.recipe_id
ORDER BY s.distance;
