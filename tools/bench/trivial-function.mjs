// The baseline for the cold-start ratio: a function that answers at once.
import { http } from '@google-cloud/functions-framework';
http('trivial', (_req, res) => void res.status(200).send('ok'));
