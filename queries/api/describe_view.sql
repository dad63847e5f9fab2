-- Archive.describe(dataset): the view's columns and DuckDB types.
SELECT column_name AS view_column, data_type AS view_type
FROM information_schema.columns
WHERE table_name = $view
ORDER BY ordinal_position
