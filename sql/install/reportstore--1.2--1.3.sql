-- reportstore 1.2 -> 1.3: no second view of a database can lose a report;
-- hostile neighbours and the lifecycle of the table and the extension.
--
-- A fresh install of 1.3 runs 1.0, 1.0--1.1, 1.1--1.2 and this file (the
-- Makefile concatenates them), so upgraded and fresh databases are the same.

\echo Use "ALTER EXTENSION reportstore UPDATE TO '1.3'" to load this file. \quit
