module github.com/dynamo-kv/dynamo

go 1.26
