-- A program's source map (its error messages name the uploaded file).
ALTER TABLE "Program" ADD COLUMN "sourceMapHash" TEXT;

-- Whether a host's name was chosen by its owner (a hello's default name does not replace it).
ALTER TABLE "Volunteer" ADD COLUMN "nameChosen" BOOLEAN NOT NULL DEFAULT false;
